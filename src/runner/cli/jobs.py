"""`runner job KEY`: one CI job of a release on the local Docker daemon, through runner.flow: its
stage built from what the build cache holds, the shared stages it made pushed there; a target's job
also smoke-tests the image and pushes its single-arch tag, recording the result for the run. The job
is planned in the selection its matrix emitted, so it builds nothing outside it."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.release import _run, credentials, options, registry_access
from runner.compose.project import load_project
from runner.flow.release import Release
from runner.model.targets import Selection


def job(a: argparse.Namespace) -> int:
    return _run(_job, a)


async def _job(a: argparse.Namespace) -> int:
    creds = credentials(a)
    release = Release(load_project(a.matrix), Selection.from_json(a.selection), registry=registry_access(a, creds),
                      credentials=creds)
    result, out = await release.job(a.key, options(a))
    print(json.dumps(result, indent=1))
    for line in out.problems():
        print(f"runner: {line}", file=sys.stderr)
    return 1 if out.failed else 0
