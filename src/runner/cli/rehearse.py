"""`runner rehearse`: the release's own build of the selected images, here, with the declared
substitutions; prints each image's verdict and the steps that did not simply run."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.inspect import selected_targets
from runner.cli.release import _run, _writable


def rehearse(a: argparse.Namespace) -> int:
    return _run(_rehearse, a)


async def _rehearse(a: argparse.Namespace) -> int:
    from runner.rehearse.run import rehearse as run
    from runner.release.provenance import build_info
    from runner.ui.tables import print_rich, rehearsal_table

    project, targets = selected_targets(a)
    _writable(a.report, "report file")
    targets = [t for t in targets if not a.platform or a.platform in t.platforms]
    if a.platform:
        from dataclasses import replace

        targets = [replace(t, platforms=(a.platform,)) for t in targets]

    def progress(r) -> None:
        print(f"runner: rehearsed {r.tag} on {r.platform}: {r.verdict} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)

    result = await run(project, targets, build_info(project.matrix_path.parent, "", ""), a.keep, progress)
    if a.report:
        from runner.model.files import write_atomic

        write_atomic(a.report, json.dumps(result, indent=1), "report file")
    if a.format == "json":
        print(json.dumps(result, indent=1))
    else:
        print_rich(rehearsal_table(result))
    for image in result["images"]:
        for s in image["substitutions"]:
            print(f"runner: {image['tag']} on {image['platform']}: substituted: {s['what']}, by {s['by']}, because "
                  f"{s['why']}", file=sys.stderr)
        for step in image["steps"]:
            if step["status"] == "failed":
                print(f"runner: {image['tag']} on {image['platform']}: step failed: [{step['stage']}] {step['title']}\n"
                      f"{step['output'][-1500:]}", file=sys.stderr)
            elif step["status"] == "not fetchable here":
                print(f"runner: {image['tag']} on {image['platform']}: not fetchable here: [{step['stage']}] "
                      f"{step['title']}: {' '.join(step['urls'])}", file=sys.stderr)
    c = result["coverage"]
    print(f"runner: distinct scripts: {c['ran']} ran, {c['substituted']} substituted, {c['not fetchable here']} not "
          f"fetchable here, {c['failed']} failed, {c['not run']} not run, of {c['total']}", file=sys.stderr)
    return 1 if any(i["verdict"] != "passed" for i in result["images"]) else 0
