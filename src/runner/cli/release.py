"""`runner build|publish|merge|promote|discard|prune`: the release flow on a local Docker daemon
(BuildKit) and registry, through the same runner.release code as the Dagger module.

Everything that can be checked is checked before the first change (report path, catalog, names,
credentials). SIGINT and SIGTERM cancel the run: child processes are stopped, the private credential
folder is removed, and the command exits 130 or 143 with a message."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from runner.cli.inspect import selected_targets
from runner.model.errors import UserError

_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$")


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _run(fn: Callable[..., Awaitable[int]], *args) -> int:
    """Run a coroutine; SIGINT/SIGTERM cancel it cleanly (finally blocks run, children are stopped)."""
    import anyio

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


def _password(a: argparse.Namespace) -> str:
    password = os.environ.get(a.password_env, "")
    if not password or not a.username:
        raise UserError(f"registry credentials missing: set --username and the environment variable {a.password_env}")
    return password


def _repository(project, a: argparse.Namespace):
    from runner.release.publish import Repository

    if not _HOST.match(a.registry):
        raise UserError("malformed registry address", value=a.registry, allowed="host[:port], e.g. docker.io")
    ns, name = a.namespace or project.namespace, a.repository or project.repository
    for what, value in (("namespace", ns), ("repository", name)):
        if not _NAME.match(value):
            raise UserError(f"malformed {what}", value=value,
                            allowed="lower-case letters, digits and . _ - between them, parts joined by /")
    return Repository(a.registry, ns, name)


def _writable(path: Path | None, what: str) -> None:
    if path is not None:
        from runner.model.files import check_writable

        check_writable(path, what)


def _client(a: argparse.Namespace, password: str):
    from runner.release.registry import Registry

    return Registry(a.registry, a.username, password, insecure=a.insecure)


def build_cache(a: argparse.Namespace, project):
    """The build cache of --build-cache HOST/NAMESPACE/REPOSITORY (None without it), with the stages
    other CI jobs start from; its credentials are the publishing ones, else $REGISTRY_USERNAME and
    $REGISTRY_PASSWORD."""
    if not getattr(a, "build_cache", ""):
        return None, None
    from runner.compose.jobs import ci_jobs
    from runner.compose.plan import make_plan
    from runner.release.build_cache import BuildCache
    from runner.release.registry import Registry

    host, _, path = a.build_cache.partition("/")
    if not _HOST.match(host) or not _NAME.match(path):
        raise UserError("malformed --build-cache", value=a.build_cache, allowed="host[:port]/namespace/repository")
    username = getattr(a, "username", "") or os.environ.get("REGISTRY_USERNAME", "")
    password = os.environ.get(getattr(a, "password_env", "REGISTRY_PASSWORD"), "")
    shared = ci_jobs(make_plan(project.targets, project.recipes)).shared()
    return BuildCache(Registry(host, username, password), path, shared), (host, username, password)


async def _build(a: argparse.Namespace, publish: bool) -> int:
    from runner.compose.plan import make_plan
    from runner.engines.build_records import BuildRecords
    from runner.engines.docker import Docker, DockerBuilder
    from runner.release import pipeline, publish as flow
    from runner.release.provenance import build_info
    from runner.release.report import report
    from runner.release.smoke_memory import SmokeMemory
    from runner.ui.tables import print_rich, progress_bar, report_table

    project, targets = selected_targets(a)
    _writable(a.report, "report file")
    repo = _repository(project, a) if publish else None
    password = _password(a) if publish else ""
    plan = make_plan(targets, project.recipes)
    info = build_info(project.matrix_path.parent, a.source_url, a.revision)
    memory = SmokeMemory(recall=not a.no_smoke_cache)
    cache, cache_login = build_cache(a, project)
    pubs: list = []
    with Docker() as docker:
        builder = DockerBuilder(docker, info, project.pack_path, mirrors=project.mirror_map(), build_cache=cache,
                                records=BuildRecords())
        try:
            async with AsyncExitStack() as stack:
                if publish:
                    async with _client(a, password) as reg:
                        await reg.login()  # before hours of building, not after
                    await docker.login(a.registry, a.username, password)
                if cache is not None:
                    await stack.enter_async_context(cache.registry)
                    await cache.registry.login()
                    if cache_login[0] != getattr(a, "registry", None):
                        await docker.login(*cache_login)
                with progress_bar(len(plan.leaves)) as advance:
                    built = await pipeline.build_all(plan, builder, project.pack_path, a.concurrency, advance, a.gpu,
                                                     memory)
                retries = []
                if publish:
                    async with _client(a, password) as reg:
                        pubs = await flow.publish(built, builder, reg, repo, {t.tag: t.platforms for t in project.targets},
                                                  index=not a.single_arch)
                        retries = reg.retries + builder.retries
        finally:
            builder.close()
    result = report(built, pubs)
    result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached,
                       "images_unchanged": builder.counts.images_unchanged, "distinct_stages": plan.distinct_stages}
    if cache is not None:
        result["build_cache"] = {"found": cache.found, "published": cache.published}
    result["registry_retries"] = retries
    if a.report:
        from runner.model.files import write_atomic

        write_atomic(a.report, json.dumps(result, indent=1), "report file")
    print_rich(report_table(result))
    failed = [r for r in result["images"] if not r["smoke"]["passed"]]
    for r in failed:
        what = r["error"] or "smoke checks failed: " + ", ".join(r["smoke"]["failed"])
        print(f"runner: {r['tag']} on {r['platform']}: {what}", file=sys.stderr)
    for p in pubs:
        if p.error:
            print(f"runner: {p.tag}: not published: {p.skipped}", file=sys.stderr)
        elif p.note:
            print(f"runner: {p.tag}: {p.note}", file=sys.stderr)
    if failed:
        print("runner: fix the recipe or smoke spec in pack/ and build again; failed tags were not published",
              file=sys.stderr)
    return 1 if failed or any(p.error for p in pubs) else 0


async def _smoke(a: argparse.Namespace) -> int:
    from runner.compose.project import load_project
    from runner.engines.docker import Docker, DockerBuilder
    from runner.release.existing import smoke_existing, subjects
    from runner.release.report import report
    from runner.release.smoke_memory import SmokeMemory
    from runner.ui.tables import print_rich, report_table

    project = load_project(a.matrix)
    _writable(a.report, "report file")
    memory = SmokeMemory(recall=not a.no_smoke_cache)
    built = []
    with Docker() as docker:
        builder = DockerBuilder(docker, {}, project.pack_path)
        try:
            for ref in a.images:
                local = "" if a.platform else await builder.local_platform(ref)
                (subject,) = subjects(project, [ref], a.target, a.platform or local)
                built += await smoke_existing(project, subject, builder, project.pack_path, a.gpu, memory)
        finally:
            builder.close()
    result = report(built)
    if a.report:
        from runner.model.files import write_atomic

        write_atomic(a.report, json.dumps(result, indent=1), "report file")
    print_rich(report_table(result))
    for b in built:
        for c in b.checks:
            if not c.passed:
                print(f"runner: {b.target.tag} on {b.platform}: {c.name}: {c.reason}", file=sys.stderr)
        if b.error:
            print(f"runner: {b.target.tag} on {b.platform}: {b.error}", file=sys.stderr)
    return 0 if built and all(b.passed for b in built) else 1


async def _registry(a: argparse.Namespace, op: str) -> int:
    from runner.model import catalog
    from runner.release import publish as flow
    from runner.ui.selection import promotion_lines, publication_lines

    if op == "prune":
        from runner.compose.project import load_project

        project, targets = load_project(a.matrix), []
    else:
        project, targets = selected_targets(a)
    repo = _repository(project, a)
    password = _password(a)
    book = catalog.CatalogFile(a.catalog) if a.catalog else None
    if book is not None:
        book.check()
    async with _client(a, password) as reg:
        await reg.login()
        if op == "prune":
            done = await flow.prune(reg, repo, {t.tag for t in project.targets}, project.parser.parse, book,
                                    a.intermediates)
            print(json.dumps({"deleted": done, "registry_retries": reg.retries}, indent=1))
            return 0
        if op == "discard":
            done = await flow.discard(targets, reg, repo, book)
            print(json.dumps({"deleted": done, "registry_retries": reg.retries}, indent=1))
            return 0
        if op == "merge":
            pubs = await flow.merge(targets, reg, repo)
            print("\n".join(publication_lines(pubs)), file=sys.stderr)
            print(json.dumps([vars(p) for p in pubs], indent=1))
            return 1 if any(p.skipped for p in pubs) and not a.skip_missing else 0
        from runner.compose.catalog_records import catalog_records

        results = await flow.promote(targets, reg, repo, book, lambda ts: catalog_records(project, ts, repo.catalog_image),
                                     skip_missing=a.skip_missing)
        print("\n".join(promotion_lines(results)), file=sys.stderr)
        print(json.dumps([vars(r) for r in results], indent=1))
        return 0
