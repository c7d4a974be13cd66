"""`runner job KEY`: one CI job of the plan's waves (see runner.compose.jobs) on the local Docker
daemon: its stage built from what the build cache holds, the shared stages it made pushed there; a
target's job also smoke-tests the image and, with --registry, pushes its single-arch tag."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AsyncExitStack

from runner.cli.release import _client, _password, _repository, _run, attester_for, build_cache
from runner.model.errors import UserError


def job(a: argparse.Namespace) -> int:
    return _run(_job, a)


async def _job(a: argparse.Namespace) -> int:
    from runner.compose.jobs import ci_jobs
    from runner.compose.plan import make_plan
    from runner.compose.project import load_project
    from runner.engines.docker import Docker, DockerBuilder
    from runner.release import pipeline, publish as flow
    from runner.release.provenance import build_info
    from runner.release.smoke_memory import SmokeMemory

    project = load_project(a.matrix)
    plan = make_plan(project.targets, project.recipes)
    the_job = ci_jobs(plan).find(a.key)
    if not a.build_cache:
        raise UserError("a CI job needs --build-cache HOST/NAMESPACE/REPOSITORY (where the waves hand stages on)")
    cache, login = build_cache(a, project)
    publish = bool(a.registry and the_job.tag)
    repo = _repository(project, a) if publish else None
    password = _password(a) if publish else ""
    info = build_info(project.matrix_path.parent, a.source_url, a.revision)
    attester = attester_for(a, publish, info)
    built, pubs = [], []
    with Docker(secrets=[password, login[2]]) as docker:
        builder = DockerBuilder(docker, info, project.pack_path, mirrors=project.mirror_map(), build_cache=cache,
                                reproducible=a.reproducible)
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(cache.registry)
                await cache.registry.login()
                await docker.login(*login)
                if not the_job.tag:
                    await builder.build_stage(the_job.root, f"runner-build/{the_job.root.name}:{the_job.key[:12]}")
                else:
                    leaf = next(x for x in plan.leaves if x.stage.key == the_job.key)
                    one = make_plan([_only(leaf.target, leaf.platform)], project.recipes)
                    memory = SmokeMemory(recall=not a.no_smoke_cache)
                    built = await pipeline.build_all(one, builder, project.pack_path, 1, lambda b: None, a.gpu, memory)
                    if publish:
                        reg = await stack.enter_async_context(_client(a, password))
                        await reg.login()
                        await docker.login(a.registry, a.username, password)
                        attester.engine = builder
                        pubs = await flow.publish(built, builder, reg, repo, {t.tag: t.platforms for t in project.targets},
                                                  index=False, attest=attester)
        finally:
            builder.close()
    out = {"job": the_job.as_dict(), "from_cache": cache.found, "published_to_cache": cache.published,
           "steps": {"executed": builder.counts.executed, "cached": builder.counts.cached},
           "images": [{"tag": b.leaf.target.tag, "platform": b.leaf.platform, "passed": b.passed, "error": b.error}
                      for b in built], "pushed": [p.tag for p in pubs if not p.skipped]}
    print(json.dumps(out, indent=1))
    failed = [b for b in built if not b.passed]
    for b in failed:
        print(f"runner: {b.leaf.target.tag} on {b.leaf.platform}: {b.error or 'smoke checks failed'}", file=sys.stderr)
    for p in pubs:
        if p.error:
            print(f"runner: {p.tag}: not pushed: {p.skipped}", file=sys.stderr)
    return 1 if failed or any(p.error for p in pubs) else 0


def _only(target, platform: str):
    from dataclasses import replace

    return replace(target, platforms=(platform,))
