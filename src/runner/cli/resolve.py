"""`runner resolve`: resolve every install step of the selected images with uv, and each image's
steps as one set (reported as step 0), before any build."""

from __future__ import annotations

import argparse
import json
import sys
import time


def resolve(a: argparse.Namespace) -> int:
    import anyio

    from runner.cli.inspect import selected_targets
    from runner.flow.release import Release
    from runner.verify.resolve import steps_of
    from runner.verify.resolver import Resolver, resolve_all

    project, targets = selected_targets(a)
    plan = Release(project, targets=targets).plan
    leaves = [leaf for leaf in plan.leaves if not a.platform or leaf.platform == a.platform]
    resolver = Resolver(jobs=a.jobs, refresh=a.refresh)
    counts = [len(steps_of(leaf.stage)) for leaf in leaves]
    whole = not a.per_step
    total = sum(n + (whole and n > 1) for n in counts)  # and each image of several steps resolved as one set
    start = time.monotonic()
    if a.format == "json" or not sys.stderr.isatty():
        reports = anyio.run(resolve_all, leaves, project.mirror_map(), resolver, lambda r: None, whole)
    else:
        from runner.ui.resolve import progress

        with progress(total) as done:
            reports = anyio.run(resolve_all, leaves, project.mirror_map(), resolver, done, whole)
    seconds = time.monotonic() - start
    conflicts = [r for r in reports if r.status == "conflict"]
    if a.format == "json":
        print(json.dumps({"steps": [r.to_json() for r in reports], "conflicts": len(conflicts),
                          "image_conflicts": sum(not r.step for r in conflicts),
                          "seconds": round(seconds, 1), "uv": resolver.version}, indent=1))
    else:
        from runner.ui.resolve import not_checked_summary, resolve_table
        from runner.ui.tables import print_rich

        print_rich(resolve_table(reports, a.verbose))
        for line in not_checked_summary(reports):
            print(line)
        print(f"{len(reports)} install steps of {len(leaves)} images in {seconds:.1f} s "
              f"({sum(r.cached for r in reports)} answers from the cache)")
    if steps := [r for r in conflicts if r.step]:
        print(f"runner: error: {len(steps)} install steps do not resolve", file=sys.stderr)
    if images := [r for r in conflicts if not r.step]:
        print(f"runner: error: {len(images)} images do not resolve as one set (their steps conflict)", file=sys.stderr)
    if conflicts:
        return 2
    return 0
