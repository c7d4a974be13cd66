"""`runner build|publish|promote|discard|prune --engine docker`: the release flow on a local Docker
daemon (BuildKit) and registry, through the same pipeline as the Dagger module."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import anyio

from runner.errors import UserError


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", required=True, help="registry host[:port], e.g. docker.io or 127.0.0.1:5000")
    p.add_argument("--namespace", default="", help="image namespace (default: the matrix's)")
    p.add_argument("--repository", default="", help="image repository (default: the matrix's)")
    p.add_argument("--username", default=os.environ.get("REGISTRY_USERNAME", ""), help="registry user ($REGISTRY_USERNAME)")
    p.add_argument("--password-env", default="REGISTRY_PASSWORD", metavar="VAR",
                   help="environment variable holding the registry password (never pass it as an argument)")
    p.add_argument("--insecure", action="store_true", help="plain-HTTP registry, e.g. a local test registry")
    p.add_argument("--catalog", type=Path, help="catalog file to keep in step (atomically rewritten)")


def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("docker",), default="docker",
                   help="docker: the local daemon's BuildKit (the Dagger engine is used through `dagger call`)")
    p.add_argument("--concurrency", type=int, default=2, help="images built and tested at once")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--gpu", action="store_true", help="also run the backend's device check (host needs the accelerator)")
    p.add_argument("--source-url", default="https://github.com/gpustack/runner", help="org.opencontainers.image.source")
    p.add_argument("--revision", default=os.environ.get("GITHUB_SHA", ""), help="org.opencontainers.image.revision")


def build_info(root: Path, source: str, revision: str) -> dict[str, str]:
    """OCI source, revision and created. created is $SOURCE_DATE_EPOCH, else the recipe commit's time,
    else now: the same commit gives the same labels, so rebuilding and republishing change nothing."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    if epoch := os.environ.get("SOURCE_DATE_EPOCH"):
        when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    elif stamp := git("log", "-1", "--format=%ct"):
        when = datetime.datetime.fromtimestamp(int(stamp), datetime.timezone.utc)
    else:
        when = datetime.datetime.now(datetime.timezone.utc)
    return {"source": source, "revision": revision or git("rev-parse", "HEAD"),
            "created": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _password(a: argparse.Namespace) -> str:
    password = os.environ.get(a.password_env, "")
    if not password or not a.username:
        raise UserError(f"registry credentials missing: set --username and the environment variable {a.password_env}")
    return password


def _image_of(project, a: argparse.Namespace):
    ns, repo = a.namespace or project.namespace, a.repository or project.repository
    return lambda tag: f"{a.registry}/{ns}/{repo}:{tag}", f"{a.registry}/{ns}/{repo}"


async def _build(a: argparse.Namespace, publish: bool) -> int:
    from runner import pipeline
    from runner.cli import _selected
    from runner.engines.docker_engine import DockerBuilder, docker_session
    from runner.plan import make_plan
    from runner.show import print_rich, progress_bar, report_table

    project, targets = _selected(a)
    plan = make_plan(targets, project.recipes)
    info = build_info(project.matrix_path.parent, a.source_url, a.revision)
    with docker_session() as docker:
        if publish:
            await docker.login(a.registry, a.username, _password(a))
        builder = DockerBuilder(docker, info, "heredoc" if await docker.heredocs() else "compat")
        try:
            with progress_bar(len(plan.leaves)) as advance:
                built = await pipeline.build_all(plan, builder, project.pack_path, a.concurrency, advance, a.gpu)
            pubs = await pipeline.publish(built, builder, _image_of(project, a)[0], index=not a.single_arch) \
                if publish else []
        finally:
            builder.close()
    result = pipeline.report(built, pubs)
    result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached,
                       "distinct_stages": plan.distinct_stages}
    if a.report:
        a.report.write_text(json.dumps(result, indent=1))
    print_rich(report_table(result))
    failed = [r for r in result["images"] if not r["smoke"]["passed"]]
    for r in failed:
        what = r["error"] or "smoke checks failed: " + ", ".join(r["smoke"]["failed"])
        print(f"runner: {r['tag']} on {r['platform']}: {what}", file=sys.stderr)
    if failed:
        print("runner: fix the recipe or smoke spec in pack/ and build again; failed tags were not published",
              file=sys.stderr)
    return 1 if failed else 0


async def _registry(a: argparse.Namespace, op: str) -> int:
    from runner import catalog, pipeline
    from runner.cli import _selected
    from runner.engines.docker_engine import docker_session, host_skopeo
    from runner.project import load_project

    project = load_project(a.matrix)
    image_of, repo = _image_of(project, a)
    with docker_session() as docker:
        await docker.login(a.registry, a.username, _password(a))
        regops = host_skopeo(docker.authfile, tls_verify=not a.insecure)
        if op == "prune":
            done = await pipeline.prune(repo, regops, {t.tag for t in project.targets}, project.parser.parse,
                                        a.catalog, a.intermediates)
            print(json.dumps({"deleted": done}, indent=1))
            return 0
        _, targets = _selected(a)
        if op == "merge":
            from runner.engines.docker_engine import DockerBuilder

            builder = DockerBuilder(docker, {})
            try:
                pubs = await pipeline.merge(targets, builder, regops, image_of)
            finally:
                builder.close()
            print(json.dumps([vars(p) for p in pubs], indent=1))
            return 1 if any(p.skipped for p in pubs) else 0
        if op == "discard":
            print(json.dumps({"deleted": await pipeline.discard(targets, regops, image_of, a.catalog)}, indent=1))
            return 0
        ns, name = a.namespace or project.namespace, a.repository or project.repository
        results = await pipeline.promote(targets, regops, image_of, a.catalog,
                                         lambda ts: catalog.records(ts, lambda tag: f"{ns}/{name}:{tag}"))
        print(json.dumps([vars(r) for r in results], indent=1))
        return 1 if any(r.skipped for r in results) else 0


def add_commands(sub, selection_args) -> None:
    """Register the engine subcommands."""
    p = sub.add_parser("build", help="build and smoke-test the selection on the local Docker daemon")
    selection_args(p)
    _build_args(p)
    p.set_defaults(func=lambda a: _exit(a, anyio.run(_build, a, False)))

    p = sub.add_parser("publish", help="build (cached), smoke-test and publish single-arch tags and -dev indexes")
    selection_args(p)
    _build_args(p)
    _registry_args(p)
    p.add_argument("--single-arch", action="store_true", help="push single-arch images only (`merge` makes the indexes)")
    p.set_defaults(func=lambda a: _exit(a, anyio.run(_build, a, True)))

    for op, text in (("merge", "assemble -dev indexes from single-arch tags, for tags whose platforms all passed"),
                     ("promote", "copy each tested -dev index to its final tag by digest, no rebuild"),
                     ("discard", "delete every tag of the selected targets and drop them from the catalog")):
        p = sub.add_parser(op, help=text)
        selection_args(p)
        _registry_args(p)
        p.set_defaults(func=lambda a, op=op: _exit(a, anyio.run(_registry, a, op)))

    p = sub.add_parser("prune", help="delete tags the matrix no longer has (and, with --intermediates, -dev/single-arch tags)")
    p.add_argument("--matrix", type=Path)
    p.add_argument("--intermediates", action="store_true", help="also -dev and single-arch tags of promoted targets")
    _registry_args(p)
    p.set_defaults(func=lambda a: _exit(a, anyio.run(_registry, a, "prune")))


def _exit(a: argparse.Namespace, code: int) -> None:
    a.exit_code = code
