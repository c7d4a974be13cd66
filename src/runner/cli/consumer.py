"""`runner consumer`: what GPUStack's own code starts in our images and how gpustack-runtime runs a
device, compared with what pack/_consumer/ records (exit 1 when the record is stale), or written."""

from __future__ import annotations

import argparse
import sys
import time


def consumer(a: argparse.Namespace) -> int:
    from runner.cli.inspect import _project
    from runner.compose.catalog_records import catalog_records
    from runner.model.errors import Failed
    from runner.verify import consumer_refresh
    from runner.verify.probes import components

    project = _project(a)
    start = time.monotonic()
    shipped = {}

    def components_of(t):
        if t.tag not in shipped:
            shipped[t.tag] = components(project.leaf_stage(t.tag))
        return shipped[t.tag]

    catalog = [r.model_dump(exclude_none=True) for r in catalog_records(project, project.targets, project.image)]
    record, profiles = consumer_refresh.generate(project, catalog, components_of)
    found = consumer_refresh.outcomes(project.pack_path, record, profiles)
    starts = sum(len(s.targets) for started in record.deployments.values() for s in started)
    errors = [(name, s) for name, started in record.deployments.items() for s in started if s.error]
    print(f"GPUStack {record.gpustack} (gpustack-runtime {record.gpustack_runtime}): {starts} deployments of "
          f"{len(project.targets)} targets in {time.monotonic() - start:.0f} s", file=sys.stderr)
    for name, s in errors:
        more = f" and {len(s.targets) - 3} more" if len(s.targets) > 3 else ""
        print(f"  {name}: GPUStack cannot start it on {', '.join(s.targets[:3])}{more}: {s.error}", file=sys.stderr)
    stale = [o for o in found if o.stale]
    if a.write:
        consumer_refresh.write(stale)
        for o in stale:
            print(f"wrote {o.path}", file=sys.stderr)
        return 0
    for o in stale:
        print(o.diff(), file=sys.stderr)
    if stale:
        raise Failed(f"{', '.join(o.path.name for o in stale)} differ from what the pinned GPUStack gives now; "
                     "review the difference and run `runner consumer --write`")
    print("the record matches what the pinned GPUStack starts", file=sys.stderr)
    return 0
