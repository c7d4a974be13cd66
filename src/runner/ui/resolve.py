"""`runner resolve` for people: a progress bar while uv works, then one row per install step that is
not plainly resolved (and a count of those that are), conflicts with uv's explanation."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

_STYLE = {"resolved": "green", "conflict": "bold red", "not-checked": "yellow", "nothing": "dim"}


@contextmanager
def progress(total_steps: int):
    """A progress bar over install steps; the context gives the callback for each finished step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("resolving install steps"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("resolve", total=total_steps)

        def done(report) -> None:
            if report.status == "conflict":
                bar.console.print(f"[bold red]conflict[/] {report.tag} {report.platform} step {report.step}: {report.title}")
            bar.advance(task)

        yield done


def resolve_table(reports: list, verbose: bool = False) -> Table:
    """Conflicts and unchecked steps (every step with `verbose`), with the versions that matter."""
    counts = Counter(r.status for r in reports)
    table = Table(title="runner resolve", show_lines=True,
                  caption=", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + " install steps")
    for col in ("tag", "platform", "step", "status", "versions / why"):
        table.add_column(col, overflow="fold")
    for r in reports:
        if r.status == "resolved" and not verbose:
            continue
        detail = r.message if r.status != "resolved" else " ".join(f"{k}={v}" for k, v in r.versions.items())
        if r.step == 0 and r.status == "conflict":  # the whole image as one set: which steps disagree
            detail = "\n".join((*r.notes, detail))
        table.add_row(r.tag, r.platform.split("/")[1], f"{r.step}. {r.title}",
                      f"[{_STYLE[r.status]}]{r.status}[/]" + (" (cached)" if r.cached else ""), detail)
    return table


def not_checked_summary(reports: list) -> list[str]:
    """One line per reason a step could not be checked, with how many steps it kept out."""
    reasons = Counter(r.message for r in reports if r.status == "not-checked")
    return [f"not checked here ({n} steps): {why}" for why, n in reasons.most_common()]
