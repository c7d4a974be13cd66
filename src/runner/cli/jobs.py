"""`runner job KEY`: one CI job of a release (runner.release.ci_job) on the local Docker daemon: its
stage built from what the build cache holds, the shared stages it made pushed there; a target's job
also smoke-tests the image and pushes its single-arch tag, recording the result for the run."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AsyncExitStack

from runner.cli.release import _client, _repository, _run, attester_for, cache_registry, secret
from runner.model.errors import UserError


def job(a: argparse.Namespace) -> int:
    return _run(_job, a)


async def _job(a: argparse.Namespace) -> int:
    from runner.compose.project import load_project
    from runner.engines.docker import Docker, DockerBuilder
    from runner.model.targets import Selection
    from runner.release.ci_job import find_job, run_job
    from runner.release.provenance import build_info
    from runner.release.run_records import RunRecords
    from runner.release.smoke_memory import SmokeMemory

    project = load_project(a.matrix)
    ci = find_job(project, Selection.from_json(a.selection), a.key)
    if not a.build_cache:
        raise UserError("a CI job needs --build-cache HOST/NAMESPACE/REPOSITORY (where the jobs hand stages on)")
    publish = ci.leaf is not None and not a.dry_run
    if publish and not (a.registry and a.run):
        raise UserError("a target's job pushes its image and records it for the run: give --registry and --run "
                        "(or --dry-run, which writes nothing)")
    password = secret(a.password_env)
    if not a.dry_run and not (password and a.username):
        raise UserError(f"registry credentials missing: set --username and the environment variable {a.password_env} "
                        "(a dry run needs none)")
    cache = login = None
    notes = []
    if password:
        cache_reg, cache_path, login = cache_registry(a)
        cache = ci.cache(cache_reg, cache_path, a.dry_run)
    else:
        notes.append("a dry run without registry credentials reads no build cache: every stage is built here")
    repo = _repository(project, a) if publish else None
    info = build_info(project.matrix_path.parent, a.source_url, a.revision)
    attester = attester_for(a, publish, info)
    out = None
    with Docker(secrets=[password, login[2] if login else ""]) as docker:
        await docker.require_engine()  # said once, before the build cache is asked
        builder = DockerBuilder(docker, info, project.pack_path, mirrors=project.mirror_map(), build_cache=cache,
                                reproducible=a.reproducible)
        try:
            async with AsyncExitStack() as stack:
                if cache is not None:
                    await stack.enter_async_context(cache.registry)
                    await cache.registry.login()
                    await docker.login(*login)
                reg = records = None
                if publish:
                    reg = await stack.enter_async_context(_client(a, password))
                    await reg.login()
                    if a.registry != login[0]:
                        await docker.login(a.registry, a.username, password)
                    records = RunRecords(reg, repo.runs_path, a.run)
                    attester.engine = builder
                memory = SmokeMemory(recall=not a.no_smoke_cache)
                out = await run_job(ci, builder, project.pack_path, reg, repo, records, a.gpu, memory, a.emulate,
                                    attest=attester if publish else None)
        finally:
            builder.close()
    result = out.as_dict(ci, cache, a.run, a.dry_run)
    result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached}
    result["notes"] = notes
    print(json.dumps(result, indent=1))
    for line in out.problems():
        print(f"runner: {line}", file=sys.stderr)
    return 1 if out.failed else 0
