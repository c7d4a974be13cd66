"""`runner resolve` for people: a progress bar while uv works, then one row per conflict (with uv's
explanation), the steps nobody could check summed up per index, and a count of the rest."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
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
    """Conflicts (every step with `verbose`), with the versions that matter."""
    counts = Counter(r.status for r in reports)
    table = Table(title="runner resolve", show_lines=True,
                  caption=", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + " install steps")
    for col in ("tag", "platform", "step", "status", "versions / why"):
        table.add_column(col, overflow="fold", no_wrap=col == "tag")
    for r in reports:
        if r.status in ("resolved", "not-checked") and not verbose:
            continue  # not-checked steps are summed up per index below the table (JSON keeps each)
        detail = r.message if r.status != "resolved" else " ".join(f"{k}={v}" for k, v in r.versions.items())
        if r.step == 0 and r.status == "conflict":  # the whole image as one set: which steps disagree
            detail = "\n".join((*r.notes, detail))
        table.add_row(r.tag, r.platform.split("/")[1], f"{r.step}. {r.title}",
                      f"[{_STYLE[r.status]}]{r.status}[/]" + (" (cached)" if r.cached else ""), detail)
    return table


UNREACHABLE = "cannot be reached from here: "  # runner.verify.resolver's words, then "URL (why), ..."
_PLACE = re.compile(r"(\S+) \(([^()]*)\)")


def not_checked_summary(reports: list) -> list[str]:
    """One line per index that could not be reached (or other reason a step went unchecked), with how
    many install steps and images it kept out: the table lists none of them one by one."""
    steps: Counter = Counter()
    images: dict[str, set] = defaultdict(set)
    for r in reports:
        if r.status != "not-checked":
            continue
        places = _PLACE.findall(r.message[len(UNREACHABLE):]) if r.message.startswith(UNREACHABLE) else []
        for key in [f"behind {url} ({why})" for url, why in places] or [r.message]:
            steps[key] += 1
            images[key].add((r.tag, r.platform))
    return [f"not checked here: {n} install step{'s' * (n > 1)} of {len(images[key])} image"
            f"{'s' * (len(images[key]) > 1)} {key}" for key, n in steps.most_common()]
