"""`runner build|publish|smoke|merge|promote|discard|prune|release-report`: the arguments turned into
a runner.flow `Release` on the local Docker daemon (BuildKit) and registry, its answer printed.

Everything that can be checked is checked before the first change (report path, catalog, names,
credentials). SIGINT and SIGTERM cancel the run: child processes are stopped, the private credential
folder is removed, and the command exits 130 or 143 with a message."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import fields
from pathlib import Path

import anyio

from runner.cli.inspect import selected_targets
from runner.compose.project import load_project
from runner.flow.credentials import Credentials
from runner.flow.registry_access import RegistryAccess
from runner.flow.release import BuildOptions, Release
from runner.model.errors import InfrastructureError
from runner.model.files import check_writable
from runner.release.publish import whole_tags_only
from runner.ui.failures import failure_lines
from runner.ui.selection import promotion_lines, publication_lines
from runner.ui.tables import print_rich, progress_bar, report_table


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _run(fn: Callable[..., Awaitable[int]], *args) -> int:
    """Run a coroutine; SIGINT/SIGTERM cancel it cleanly (finally blocks run, children are stopped)."""
    async def main() -> int:
        outcome: dict[str, int] = {}
        async with anyio.create_task_group() as tg:
            async def work() -> None:
                outcome["code"] = await fn(*args)
                tg.cancel_scope.cancel()

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        outcome["signal"] = signum
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            tg.start_soon(work)
        if "signal" in outcome:
            raise Interrupted(outcome["signal"])
        return outcome["code"]

    try:
        try:
            return anyio.run(main)
        except BaseExceptionGroup as group:  # the task group wraps what the work raised: show that
            raise group.exceptions[0] if len(group.exceptions) == 1 else group from None
    except Interrupted as e:
        print(f"runner: stopped by {e}; running builds and pushes were cancelled and the run's credentials "
              "removed. Run the same command again to finish: nothing done twice is changed.", file=sys.stderr)
        return 128 + e.signum


def build(a: argparse.Namespace) -> int:
    return _run(_build, a, False)


def publish(a: argparse.Namespace) -> int:
    return _run(_build, a, True)


def smoke(a: argparse.Namespace) -> int:
    return _run(_smoke, a)


def merge(a: argparse.Namespace) -> int:
    return _run(_registry, a, "merge")


def promote(a: argparse.Namespace) -> int:
    return _run(_registry, a, "promote")


def discard(a: argparse.Namespace) -> int:
    return _run(_registry, a, "discard")


def prune(a: argparse.Namespace) -> int:
    return _run(_registry, a, "prune")


def release_report(a: argparse.Namespace) -> int:
    return _run(_registry, a, "report")


def _writable(path: Path | None, what: str) -> None:
    if path is not None:
        check_writable(path, what)


def options(a: argparse.Namespace) -> BuildOptions:
    """The build options the command line gives (those a command has no option for keep their defaults)."""
    return BuildOptions(**{f.name: getattr(a, f.name) for f in fields(BuildOptions) if hasattr(a, f.name)})


def credentials(a: argparse.Namespace) -> Credentials:
    """The account, its password read once from the variable --password-env names."""
    return Credentials.from_env(getattr(a, "username", ""), getattr(a, "password_env", "REGISTRY_PASSWORD"))


def registry_access(a: argparse.Namespace, creds: Credentials) -> RegistryAccess | None:
    if not getattr(a, "registry", ""):
        return None
    return RegistryAccess(a.registry, creds, a.namespace, a.repository, a.insecure)


def release_of(a: argparse.Namespace, publish: bool = True, project=None, targets=None) -> Release:
    """The Release the arguments describe: the selection, where it publishes, the report file."""
    if project is None:
        project, targets = selected_targets(a)
    creds = credentials(a)
    return Release(project, targets=targets or [], registry=registry_access(a, creds) if publish else None,
                   report=getattr(a, "report", None), credentials=creds)


async def _build(a: argparse.Namespace, publish: bool) -> int:
    outcome = await release_of(a, publish).build(options(a), publish, progress_bar)
    result, pubs = outcome.result, outcome.pubs
    print_rich(report_table(result))
    failed = [r for r in result["images"] if not r["smoke"]["passed"]]
    for line in failure_lines(result["images"]):
        print(f"runner: {line}", file=sys.stderr)
    for p in pubs:
        if p.error:
            print(f"runner: {p.tag}: not published: {p.skipped}", file=sys.stderr)
        elif p.note:
            print(f"runner: {p.tag}: {p.note}", file=sys.stderr)
    if failed or any(p.error and not p.fault for p in pubs):
        return 1
    return InfrastructureError.exit_code if any(p.error for p in pubs) else 0  # only the registry failed: run again


async def _smoke(a: argparse.Namespace) -> int:
    release = Release(load_project(a.matrix), report=a.report)
    outcome = await release.smoke(a.images, a.target, a.platform, a.gpu, recall=not a.no_smoke_cache)
    print_rich(report_table(outcome.result))
    for b in outcome.built:
        for c in b.checks:
            if not c.passed:
                print(f"runner: {b.target.tag} on {b.platform}: {c.name}: {c.reason}", file=sys.stderr)
        if b.error:
            print(f"runner: {b.target.tag} on {b.platform}: {b.error}", file=sys.stderr)
    return 0 if outcome.built and all(b.passed for b in outcome.built) else 1


def _say(message: str) -> None:
    print(f"runner: {message}", file=sys.stderr)


async def _registry(a: argparse.Namespace, op: str) -> int:
    if op == "prune":
        release = release_of(a, project=load_project(a.matrix), targets=[])
    else:
        whole_tags_only(getattr(a, "platform", ""), "the release report" if op == "report" else op)
        release = release_of(a)
    release.repository()
    release.credentials.required()
    book = release.catalog(a.catalog, _say)
    if op in ("prune", "discard"):
        removed = await (release.prune(book, a.intermediates) if op == "prune" else release.discard(book))
        print(json.dumps(vars(removed), indent=1))
        return 0
    if op == "report":
        from runner.ui.release_report import render

        sys.stdout.write(render(await release.run_report(a.run), a.run, a.format))
        return 0
    if op == "merge":
        pubs, notes = await release.merge(a.run)
        for note in notes:
            _say(note)
        print("\n".join(publication_lines(pubs)), file=sys.stderr)
        print(json.dumps([vars(p) for p in pubs], indent=1))
        return 1 if any(p.skipped for p in pubs) and not a.skip_missing else 0
    results = await release.promote(book, a.run, a.skip_missing, a.reason)
    print("\n".join(promotion_lines(results)), file=sys.stderr)
    print(json.dumps([vars(r) for r in results], indent=1))
    return 0
