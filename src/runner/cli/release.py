"""`runner build|publish|merge|promote|discard|prune`: the release flow on a local Docker daemon
(BuildKit) and registry, through the same runner.release code as the Dagger module."""

from __future__ import annotations

import argparse
import json
import os
import sys

from runner.cli.inspect import selected_targets
from runner.model.errors import UserError


def _password(a: argparse.Namespace) -> str:
    password = os.environ.get(a.password_env, "")
    if not password or not a.username:
        raise UserError(f"registry credentials missing: set --username and the environment variable {a.password_env}")
    return password


def _image_of(project, a: argparse.Namespace):
    ns, repo = a.namespace or project.namespace, a.repository or project.repository
    return lambda tag: f"{a.registry}/{ns}/{repo}:{tag}", f"{a.registry}/{ns}/{repo}"


def build(a: argparse.Namespace) -> int:
    import anyio

    return anyio.run(_build, a, False)


def publish(a: argparse.Namespace) -> int:
    import anyio

    return anyio.run(_build, a, True)


def merge(a: argparse.Namespace) -> int:
    import anyio

    return anyio.run(_registry, a, "merge")


def promote(a: argparse.Namespace) -> int:
    import anyio

    return anyio.run(_registry, a, "promote")


def discard(a: argparse.Namespace) -> int:
    import anyio

    return anyio.run(_registry, a, "discard")


def prune(a: argparse.Namespace) -> int:
    import anyio

    return anyio.run(_registry, a, "prune")


async def _build(a: argparse.Namespace, publish: bool) -> int:
    from runner.compose.plan import make_plan
    from runner.engines.docker import DockerBuilder, docker_session
    from runner.release import pipeline, publish as flow
    from runner.release.provenance import build_info
    from runner.release.report import report
    from runner.ui.tables import print_rich, progress_bar, report_table

    project, targets = selected_targets(a)
    plan = make_plan(targets, project.recipes)
    info = build_info(project.matrix_path.parent, a.source_url, a.revision)
    with docker_session() as docker:
        if publish:
            await docker.login(a.registry, a.username, _password(a))
        builder = DockerBuilder(docker, info, "heredoc" if await docker.heredocs() else "compat")
        try:
            with progress_bar(len(plan.leaves)) as advance:
                built = await pipeline.build_all(plan, builder, project.pack_path, a.concurrency, advance, a.gpu)
            pubs = await flow.publish(built, builder, _image_of(project, a)[0], index=not a.single_arch) \
                if publish else []
        finally:
            builder.close()
    result = report(built, pubs)
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
    from runner.engines.docker import docker_session, host_skopeo
    from runner.model import catalog
    from runner.release import publish as flow

    if op == "prune":
        from runner.compose.project import load_project

        project, targets = load_project(a.matrix), []
    else:
        project, targets = selected_targets(a)
    image_of, repo = _image_of(project, a)
    with docker_session() as docker:
        await docker.login(a.registry, a.username, _password(a))
        regops = host_skopeo(docker.authfile, tls_verify=not a.insecure)
        if op == "prune":
            done = await flow.prune(repo, regops, {t.tag for t in project.targets}, project.parser.parse,
                                    a.catalog, a.intermediates)
            print(json.dumps({"deleted": done}, indent=1))
            return 0
        if op == "merge":
            from runner.engines.docker import DockerBuilder

            builder = DockerBuilder(docker, {})
            try:
                pubs = await flow.merge(targets, builder, regops, image_of)
            finally:
                builder.close()
            print(json.dumps([vars(p) for p in pubs], indent=1))
            return 1 if any(p.skipped for p in pubs) else 0
        if op == "discard":
            print(json.dumps({"deleted": await flow.discard(targets, regops, image_of, a.catalog)}, indent=1))
            return 0
        ns, name = a.namespace or project.namespace, a.repository or project.repository
        results = await flow.promote(targets, regops, image_of, a.catalog,
                                     lambda ts: catalog.records(ts, lambda tag: f"{ns}/{name}:{tag}"))
        print(json.dumps([vars(r) for r in results], indent=1))
        return 1 if any(r.skipped for r in results) else 0
