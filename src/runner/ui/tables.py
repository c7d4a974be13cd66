"""Rich renderings for people: the matrix table, catalog table, plan tree and build report."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from runner.rehearse.steps import SHORT, STATUS_RANK

_STATUS_STYLE = {"active": "", "deprecated": "strike dim", "polished": "bold"}


def print_rich(renderable) -> None:
    """Print for a terminal (or the width $COLUMNS gives), else wide enough not to wrap when piped."""
    import os
    import sys

    Console(soft_wrap=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200).print(renderable)


def styled() -> bool:
    """Whether marks such as bold and strike reach the reader (a terminal), or must be said in words."""
    import sys

    return sys.stdout.isatty()


def matrix_table(targets: Iterable, marks: bool = True) -> Table:
    """The targets, one row each; the tag column (the one people copy) is never wrapped or cut, the
    others wrap to fit 80 columns. With `marks`, a polished or deprecated version is bold or struck;
    without (a pipe, a file), it says so in words."""
    from rich import box

    targets = list(targets)
    table = Table(title="runner matrix", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend", overflow="fold")
    table.add_column("service", overflow="fold")
    table.add_column("platforms", overflow="fold")
    table.add_column("tag", no_wrap=True, min_width=max((len(t.tag) for t in targets), default=3))
    last = None
    for t in targets:
        head = " ".join(x for x in (t.backend, t.original_backend_version, t.variant) if x)
        style = _STATUS_STYLE[t.status]
        version = (f"[{style}]{t.service_version}[/]" if marks else f"{t.service_version} ({t.status})") if style \
            else t.service_version
        table.add_row(head if head != last else "", f"{t.service} {version}",
                      " ".join(p.split("/")[1] for p in t.platforms), t.tag)
        last = head
    table.caption = ("bold: polished (pull again) · struck: deprecated" if marks else
                     "polished: pull again · deprecated: kept for old deployments")
    return table


def catalog_table(records: Iterable) -> Table:
    table = Table(title="runner catalog")
    for col in ("docker_image", "platform", "backend", "original_backend_version", "service", "service_version", "deprecated"):
        table.add_column(col, no_wrap=col == "docker_image", overflow="fold")  # the image name is what people copy
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
        table.add_column(col, no_wrap=col == "tag", overflow="fold")
    published = {p["tag"]: p for p in result.get("published", [])}
    for r in result["images"]:
        pub = published.get(r["tag"])
        failed = {"base image": "no base image", "engine": "no engine", "registry": "registry failed"}.get(
            r.get("cause", ""), "build failed")
        state = "[green]passed[/]" if r["smoke"]["passed"] else "[red]" + (
            failed if r["error"] else "failed: " + ", ".join(r["smoke"]["failed"])) + "[/]"
        pub_text = "" if pub is None else ("[red]push failed[/]" if pub.get("error") else
                                            "[dim]skipped[/]" if pub["skipped"] else pub["digest"][:19])
        table.add_row(r["tag"], r["platform"], f"{r['build_seconds']:.1f}", f"{r['size'] / 1e6:.1f} MB", state, pub_text)
    return table


def rehearsal_table(result: dict) -> Table:
    """The rehearsal report for people: one row per target and platform, its steps counted by outcome."""
    table = Table(title="runner rehearsal", caption="steps: ran/substituted/not fetchable here/not runnable here/"
                                                    "failed/not run; smoke: checks passed/run; s: seconds")
    for col in ("tag", "platform", "verdict", "steps", "smoke", "s"):
        table.add_column(col, no_wrap=col in ("tag", "steps", "smoke"), overflow="fold")
    for r in result["images"]:
        n = {k: sum(s["status"] == k for s in r["steps"]) for k in STATUS_RANK}
        color = ("green" if r["verdict"] == "passed" else
                 "yellow" if r["verdict"] in SHORT else "red")
        smoke = f"{sum(c['passed'] for c in r['smoke'])}/{len(r['smoke'])}" if r["smoke"] else "none"
        table.add_row(r["tag"], r["platform"], f"[{color}]{r['verdict']}[/]", "/".join(map(str, n.values())), smoke,
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
                state = "passed" if built.passed else f"FAILED ({built.cause or 'smoke checks'})"
                progress.console.print(f"{built.target.tag} {built.platform}: {state} in {built.seconds:.1f}s")
                progress.advance(task)

            yield advance

    return bar()
