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
from runner.model.errors import InfrastructureError, UserError
from runner.model.naming import host_problem

_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


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


def release_report(a: argparse.Namespace) -> int:
    return _run(_registry, a, "report")


_TAKEN: dict[str, str] = {}


def secret(variable: str) -> str:
    """A password variable's value, taken out of this process's environment when first read, so that no
    child process (docker, git, uv) inherits it, whatever the variable is called."""
    if variable in os.environ:
        _TAKEN[variable] = os.environ.pop(variable)
    return _TAKEN.get(variable, "")


def _password(a: argparse.Namespace) -> str:
    password = secret(a.password_env)
    if not password or not a.username:
        raise UserError(f"registry credentials missing: set --username and the environment variable {a.password_env}")
    return password


def _repository(project, a: argparse.Namespace):
    from runner.release.publish import Repository

    if problem := host_problem(a.registry):
        raise UserError("malformed registry address", value=a.registry, allowed=f"host[:port], e.g. docker.io: {problem}")
    ns, name = a.namespace or project.namespace, a.repository or project.repository
    for what, value in (("namespace", ns), ("repository", name)):
        if not _NAME.fullmatch(value):
            raise UserError(f"malformed {what}", value=value,
                            allowed="lower-case letters, digits and . _ - between them, parts joined by /")
    return Repository(a.registry, ns, name)


def _records(reg, repo, run: str):
    """The run's records (None without --run)."""
    if not run:
        return None
    from runner.release.run_records import RunRecords

    return RunRecords(reg, repo.runs_path, run)


def _writable(path: Path | None, what: str) -> None:
    if path is not None:
        from runner.model.files import check_writable

        check_writable(path, what)


def _client(a: argparse.Namespace, password: str):
    """The registry client; $RUNNER_REGISTRY_TIMEOUT (seconds one request may take, answer included) and
    $RUNNER_REGISTRY_RETRY_SECONDS (how long transient faults are retried per request) tune its patience."""
    from runner.release.registry import Registry

    patience = {}
    for variable, name in (("RUNNER_REGISTRY_TIMEOUT", "timeout"), ("RUNNER_REGISTRY_RETRY_SECONDS", "retry_seconds")):
        if text := os.environ.get(variable, ""):
            if not re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,3})?", text) or not 0 < float(text) <= 3600:
                raise UserError(f"malformed ${variable}", value=text, allowed="seconds, more than 0 and at most 3600")
            patience[name] = float(text)
    return Registry(a.registry, a.username, password, insecure=a.insecure, **patience)


def cache_registry(a: argparse.Namespace):
    """(registry client, namespace/repository, docker login) of --build-cache HOST/NAMESPACE/REPOSITORY;
    its credentials are the publishing ones, else $REGISTRY_USERNAME and $REGISTRY_PASSWORD. The build
    cache may live on another host than the images: each host is logged in to on its own."""
    from runner.release.registry import Registry

    host, _, path = a.build_cache.partition("/")
    if host_problem(host) or not _NAME.fullmatch(path):
        raise UserError("malformed --build-cache", value=a.build_cache, allowed="host[:port]/namespace/repository")
    username = getattr(a, "username", "") or os.environ.get("REGISTRY_USERNAME", "")
    password = secret(getattr(a, "password_env", "REGISTRY_PASSWORD"))
    return Registry(host, username, password), path, (host, username, password)


async def _build(a: argparse.Namespace, publish: bool) -> int:
    from runner.compose.plan import make_plan
    from runner.engines.build_records import BuildRecords
    from runner.engines.docker import Docker, DockerBuilder
    from runner.release import pipeline, publish as flow
    from runner.release.provenance import build_info
    from runner.release.report import report
    from runner.release.smoke_memory import SmokeMemory
    from runner.ui.failures import failure_lines
    from runner.ui.tables import print_rich, progress_bar, report_table

    project, targets = selected_targets(a)
    _writable(a.report, "report file")
    repo = _repository(project, a) if publish else None
    password = _password(a) if publish else ""
    if publish and a.single_arch and not a.run:
        raise UserError("publish --single-arch pushes legs for a later `merge --run ID`: give --run ID so merge "
                        "indexes exactly what this run tested")
    info = build_info(project.matrix_path.parent, a.source_url, a.revision)
    attester = attester_for(a, publish, info)
    plan = make_plan(targets, project.recipes)
    memory = SmokeMemory(recall=not a.no_smoke_cache)
    cache = cache_login = None
    if a.build_cache:
        from runner.compose.jobs import ci_jobs
        from runner.release.build_cache import BuildCache

        cache_reg, cache_path, cache_login = cache_registry(a)
        cache = BuildCache(cache_reg, cache_path, ci_jobs(plan).shared())
    pubs: list = []
    with Docker(secrets=[password, cache_login[2] if cache_login else ""]) as docker:
        await docker.require_engine()  # said once, before any login or build
        builder = DockerBuilder(docker, info, project.pack_path, mirrors=project.mirror_map(), build_cache=cache,
                                records=BuildRecords(), reproducible=a.reproducible)
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
                        attester.engine = builder
                        pubs = await flow.publish(built, builder, reg, repo, {t.tag: t.platforms for t in project.targets},
                                                  index=not a.single_arch, attest=attester,
                                                  records=_records(reg, repo, a.run))
                        retries = reg.retries + builder.retries
        finally:
            builder.close()
    result = report(built, pubs)
    result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached,
                       "images_unchanged": builder.counts.images_unchanged, "distinct_stages": plan.distinct_stages}
    if cache is not None:
        result["build_cache"] = {"found": cache.found, "published": cache.published}
    result["registry_retries"] = retries
    if publish:
        result["attestations"] = attester.notes or [unattested(attester)]
    if a.report:
        from runner.model.files import write_atomic

        write_atomic(a.report, json.dumps(result, indent=1), "report file")
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
    from runner.compose.project import load_project
    from runner.engines.docker import Docker, DockerBuilder
    from runner.release.existing import smoke_existing, subjects
    from runner.release.report import report
    from runner.release.smoke_memory import SmokeMemory
    from runner.ui.tables import print_rich, report_table

    project = load_project(a.matrix)
    _writable(a.report, "report file")
    subjects(project, a.images, a.target, a.platform)  # every name checked before the daemon is asked
    memory = SmokeMemory(recall=not a.no_smoke_cache)
    built = []
    with Docker() as docker:
        await docker.require_engine()
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


def attester_for(a: argparse.Namespace, publish: bool, info: dict[str, str]):
    """What publish attaches: SBOM and signed provenance with a signer, else only what the members
    carry (checked before any build: a bad key fails the command at once)."""
    from runner.release.attest import Attester, Carrier
    from runner.release.signing import signer_from

    signer = signer_from(a.sign_key, a.keyless) if publish else None
    return Attester(signer=signer, build_info=info) if signer is not None else Carrier()


def unattested(attester) -> str:
    return ("nothing attached" if getattr(attester, "signer", None) else
            "no SBOM or provenance attached: no signer (--sign-key, $RUNNER_SIGNING_KEY or --keyless)")


async def _registry(a: argparse.Namespace, op: str) -> int:
    from runner.model import catalog
    from runner.release import ledger, publish as flow, referrers
    from runner.release.attest import Carrier
    from runner.ui.selection import promotion_lines, publication_lines

    if op == "prune":
        from runner.compose.project import load_project

        project, targets = load_project(a.matrix), []
    else:
        flow.whole_tags_only(getattr(a, "platform", ""), "the release report" if op == "report" else op)
        project, targets = selected_targets(a)
    repo = _repository(project, a)
    password = _password(a)
    book = catalog.CatalogFile(a.catalog, notify=lambda m: print(f"runner: {m}", file=sys.stderr)) if a.catalog else None
    if book is not None:
        book.check()
    async with _client(a, password) as reg:
        await reg.login()
        if op in ("prune", "discard"):
            if op == "prune":
                done, swept = await referrers.sweeping(reg, repo.path, lambda: flow.prune(
                    reg, repo, {t.tag for t in project.targets}, project.parser.parse, book, a.intermediates))
                finals = [repo.catalog_image(t) for t in done]
            else:
                done, swept = await referrers.sweeping(reg, repo.path, lambda: flow.discard(targets, reg, repo, book))
                finals = [repo.catalog_image(t.tag) for t in targets]
            if book is not None:
                ledger.record_removals(book, finals, {"prune": "pruned", "discard": "discarded"}[op])
            print(json.dumps({"deleted": done, "artifacts_deleted": swept, "registry_retries": reg.retries}, indent=1))
            return 0
        if op == "report":
            from runner.release.run_report import run_rows
            from runner.ui.release_report import render

            sys.stdout.write(render(await run_rows(targets, reg, repo, _records(reg, repo, a.run)), a.run, a.format))
            return 0
        if op == "merge":
            carrier = Carrier()
            pubs = await flow.merge(targets, reg, repo, _records(reg, repo, a.run), attest=carrier)
            for note in carrier.notes:
                print(f"runner: {note}", file=sys.stderr)
            print("\n".join(publication_lines(pubs)), file=sys.stderr)
            print(json.dumps([vars(p) for p in pubs], indent=1))
            return 1 if any(p.skipped for p in pubs) and not a.skip_missing else 0
        from runner.compose.catalog_records import catalog_records

        results = await flow.promote(targets, reg, repo, book, lambda ts: catalog_records(project, ts, repo.catalog_image),
                                     skip_missing=a.skip_missing, run=_records(reg, repo, a.run))
        if book is not None:
            await ledger.record_promotions(book, reg, repo, results, ledger.reasons(targets, a.reason))
        print("\n".join(promotion_lines(results)), file=sys.stderr)
        print(json.dumps([vars(r) for r in results], indent=1))
        return 0
