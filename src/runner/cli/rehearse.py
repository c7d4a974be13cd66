"""`runner rehearse`: the release's own build of the selected images, here, with the declared
substitutions; prints each image's verdict and the steps that did not simply run."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.inspect import selected_targets
from runner.cli.parser import DEFAULT_PLATFORM, DEFAULT_TARGET
from runner.cli.release import _run, _writable
from runner.model.selection import FILTERS




def rehearse(a: argparse.Namespace) -> int:
    from runner.cli.engine import on_engine

    project, targets = _selection(a)
    _writable(a.report, "report file")
    return on_engine(a, lambda: _run(_rehearse, a, project, targets))


def _selection(a: argparse.Namespace):
    """The selected targets; with no filter and no --all, the default target on its platform."""
    if a.all or a.cover or any(getattr(a, f) for f in FILTERS):
        return selected_targets(a)
    project, targets = selected_targets(a)
    default = [t for t in targets if t.tag == DEFAULT_TARGET]
    if not default:
        from runner.model.errors import UserError

        raise UserError(f"this matrix has no {DEFAULT_TARGET}, the target `runner rehearse` builds by default",
                        hint="select targets (--backend, --service, ...) or pass --all for the whole matrix")
    a.platform = DEFAULT_PLATFORM
    print(f"runner: rehearsing {DEFAULT_TARGET} on {DEFAULT_PLATFORM}, the default target (select others with "
          "--backend/--service/..., or --all)", file=sys.stderr, flush=True)
    return project, default


async def _rehearse(a: argparse.Namespace, project, targets) -> int:
    from runner.flow.release import Release
    from runner.ui.tables import print_rich, rehearsal_table

    def progress(r) -> None:
        print(f"runner: rehearsed {r.tag} on {r.platform}: {r.verdict} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)

    release = Release(project, targets=targets, report=a.report)
    result = await release.rehearse(a.platform or "", a.keep, progress,
                                    lambda line: print(f"runner: {line}", file=sys.stderr, flush=True), a.cover)
    if a.format == "json":
        print(json.dumps(result, indent=1))
    else:
        print_rich(rehearsal_table(result))
    say_findings(result)
    c = result["coverage"]
    print(f"runner: distinct scripts: {c['ran']} ran, {c['substituted']} substituted, {c['not fetchable here']} not "
          f"fetchable here, {c['not runnable here']} not runnable here, {c['failed']} failed, {c['not run']} not run, "
          f"of {c['total']}", file=sys.stderr)
    return 1 if any(i["verdict"] != "passed" for i in result["images"]) else 0


def say_findings(result: dict) -> None:
    """Every substitution, failed step, unfetchable URL and failed smoke check of the report, on stderr."""
    for image in result["images"]:
        if image.get("verdict") == "stand-in not built":
            print(f"runner: {image['tag']} on {image['platform']}: {image['error']}", file=sys.stderr)
        for s in image["substitutions"]:
            print(f"runner: {image['tag']} on {image['platform']}: substituted: {s['what']}, by {s['by']}, because "
                  f"{s['why']}", file=sys.stderr)
        for step in image["steps"]:
            if step["status"] == "failed" and step["starved"]:
                print(f"runner: {image['tag']} on {image['platform']}: step failed for want of what could not be "
                      f"fetched or built here ({', '.join(step['starved'])}): [{step['stage']}] {step['title']}\n"
                      f"{step['output'][-600:]}", file=sys.stderr)
            elif step["status"] == "failed":
                print(f"runner: {image['tag']} on {image['platform']}: step failed: [{step['stage']}] {step['title']}\n"
                      f"{step['output'][-1500:]}", file=sys.stderr)
            elif step["status"] == "not runnable here":
                print(f"runner: {image['tag']} on {image['platform']}: not runnable here: [{step['stage']}] "
                      f"{step['title']}: needs {', '.join(step['needs'])}, which no CPU machine has, and no published "
                      f"artifact stands for this build\n{step['output'][-600:]}", file=sys.stderr)
            elif step["status"] == "not fetchable here":
                print(f"runner: {image['tag']} on {image['platform']}: not fetchable here: [{step['stage']}] "
                      f"{step['title']}: {' '.join(step['urls'])}", file=sys.stderr)
        for check in image["smoke"]:
            if not check["passed"]:
                print(f"runner: {image['tag']} on {image['platform']}: smoke check failed: {check['name']}: "
                      f"{check['reason']}\n{check['excerpt'][-1500:]}", file=sys.stderr)
