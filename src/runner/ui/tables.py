"""Rich renderings for people: the matrix table, catalog table, plan tree and build report."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

_STATUS_STYLE = {"active": "", "deprecated": "strike dim", "polished": "bold"}


def print_rich(renderable) -> None:
    """Print for a terminal, or wide enough not to truncate when piped."""
    import sys

    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200).print(renderable)


def matrix_table(targets: Iterable) -> Table:
    table = Table(title="runner matrix", show_lines=False)
    for col in ("backend", "version", "variant", "service", "version ", "platforms", "tag"):
        table.add_column(col.strip())
    last = None
    for t in targets:
        head = (t.backend, t.original_backend_version, t.variant)
        shown = head if head != last else ("", "", "")
        last = head
        table.add_row(*shown, t.service, f"[{_STATUS_STYLE[t.status]}]{t.service_version}[/]" if _STATUS_STYLE[t.status] else t.service_version,
                      ",".join(p.split("/")[1] for p in t.platforms), t.tag)
    table.caption = "bold: polished (pull again) · struck: deprecated"
    return table


def catalog_table(records: Iterable) -> Table:
    table = Table(title="runner catalog")
    for col in ("docker_image", "platform", "backend", "original_backend_version", "service", "service_version", "deprecated"):
        table.add_column(col)
    for r in records:
        table.add_row(r.docker_image, r.platform, r.backend + (f" ({r.backend_variant})" if r.backend_variant else ""),
                      r.original_backend_version, r.service, r.service_version, "yes" if r.deprecated else "")
    return table


def plan_tree(plan) -> Tree:
    root = Tree(f"plan: {plan.distinct_stages} distinct stages, {plan.naive_stages} without sharing "
                f"({plan.naive_stages / max(plan.distinct_stages, 1):.2f}x)")
    children: dict[str | None, list] = {}
    for s in plan.stages:
        children.setdefault(s.parent.key if s.parent else None, []).append(s)

    def add(node: Tree, parent_key: str | None) -> None:
        for s in children.get(parent_key, []):
            label = f"[bold]{s.tag}[/]" if s.tag else (s.image or s.name)
            add(node.add(f"{s.kind} {label} [dim]{s.platform} {s.key[:12]}[/]"), s.key)

    add(root, None)
    return root


def report_table(result: dict) -> Table:
    """The build report for people: one row per target and platform."""
    table = Table(title="runner build report")
    for col in ("tag", "platform", "seconds", "size", "smoke", "published"):
        table.add_column(col)
    published = {p["tag"]: p for p in result.get("published", [])}
    for r in result["images"]:
        pub = published.get(r["tag"])
        state = "[green]passed[/]" if r["smoke"]["passed"] else "[red]" + (
            "build failed" if r["error"] else "failed: " + ", ".join(r["smoke"]["failed"])) + "[/]"
        pub_text = "" if pub is None else ("[red]push failed[/]" if pub.get("error") else
                                            "[dim]skipped[/]" if pub["skipped"] else pub["digest"][:19])
        table.add_row(r["tag"], r["platform"], f"{r['build_seconds']:.1f}", f"{r['size'] / 1e6:.1f} MB", state, pub_text)
    return table


def rehearsal_table(result: dict) -> Table:
    """The rehearsal report for people: one row per target and platform, its steps counted by outcome."""
    table = Table(title="runner rehearsal")
    for col in ("tag", "platform", "verdict", "steps (ran/subst./not fetchable/failed/not run)", "seconds"):
        table.add_column(col, no_wrap=col == "tag")
    for r in result["images"]:
        n = {k: sum(s["status"] == k for s in r["steps"]) for k in
             ("ran", "substituted", "not fetchable here", "failed", "not run")}
        color = "green" if r["verdict"] == "passed" else "yellow" if r["verdict"] == "not fetchable here" else "red"
        table.add_row(r["tag"], r["platform"], f"[{color}]{r['verdict']}[/]", "/".join(map(str, n.values())),
                      f"{r['seconds']:.0f}")
    return table


def progress_bar(total: int):
    """A rich progress bar; the context gives a callback to call as each image finishes."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def bar():
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task("building and smoke-testing", total=total)

            def advance(built) -> None:
                state = "passed" if built.passed else "FAILED"
                progress.console.print(f"{built.target.tag} {built.platform}: {state} in {built.seconds:.1f}s")
                progress.advance(task)

            yield advance

    return bar()
