"""Rehearse the whole seed matrix (or a selection) on the local Docker daemon and print, per target and
platform, its verdict and the reason, then the distinct-script coverage: the figures the README gives.

Needs root, a running daemon (DOCKER_HOST) and debootstrap; it takes hours and tens of GB for the whole
matrix (every image's downloads); `--cover` rehearses only the fewest target-platforms that run every
distinct recipe script, one at a time, the largest gain first. Every report is kept in
~/.cache/runner-bench/rehearsals, and

    python bench/rehearse_all.py [--cover] [runner rehearse filters...]
    python bench/rehearse_all.py --tally [--matrix M]

adds the kept reports up against a matrix's plan: each target-platform's latest verdict, and for one
not rehearsed, what the rehearsals of other images found for the scripts it runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

KEPT = Path.home() / ".cache" / "runner-bench" / "rehearsals"


def reason(image: dict) -> str:
    """An image's verdict and why, in one line."""
    why = image["verdict"]
    if why == "failed step":
        step = next((s for s in image["steps"] if s["status"] == "failed"), None)
        why += f": [{step['stage']}] {step['title']}" if step else f": {image['error'][:120]}"
    elif why == "not fetchable here":
        urls = sorted({u for s in image["steps"] for u in s["urls"]})
        why += ": " + ", ".join(urls[:3]) + (" ..." if len(urls) > 3 else "")
    elif why == "stand-in not built":
        why += ": " + (image["error"].strip().splitlines() or [""])[-1][:160]
    elif why == "smoke failed":
        why += ": " + ", ".join(c["name"] for c in image["smoke"] if not c["passed"])
    return why


def one_by_one(argv: list[str]) -> int:
    """--cover: the cover's target-platforms one at a time, the largest gain of scripts first, each with a
    kept report of its own (a bench stopped half-way keeps what it finished), then the tally."""
    from runner.cli.parser import build_parser
    from runner.cli.rehearse import _selection
    from runner.flow.rehearsal import on_platform
    from runner.rehearse.cover import cover_targets

    a = build_parser().parse_args(["rehearse", *argv])
    project, targets = _selection(a)
    _, found = cover_targets(on_platform(targets, a.platform), project.recipes)
    print(found.describe(), flush=True)
    matrix = ["--matrix", str(a.matrix)] if a.matrix else []
    for leaf, _ in found.chosen:
        rehearse([*matrix, "--include-deprecated", "--select", leaf.target.tag, "--platform", leaf.platform])
    return tally(matrix)


def rehearse(argv: list[str]) -> int:
    KEPT.mkdir(parents=True, exist_ok=True)
    report = KEPT / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + ".json")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "runner", "rehearse", "--report", str(report), *(argv or ["--all"])], text=True)
    elapsed = time.monotonic() - start
    if not report.exists():
        print(f"no report (runner exited {done.returncode})", file=sys.stderr)
        return 2
    result = json.loads(report.read_text())
    reasons: Counter[str] = Counter()
    for image in result["images"]:
        reasons[why := reason(image)] += 1
        print(f"{image['tag']:<40} {image['platform']:<12} {image['seconds']:>7.0f} s  {why}")
    print(f"\n{len(result['images'])} target-platforms in {elapsed / 60:.1f} min: {dict(result['verdicts'])}")
    for why, n in reasons.most_common():
        print(f"{n:>4}  {why}")
    c = result["coverage"]
    print(f"distinct scripts: {c['ran']} ran, {c['substituted']} substituted, {c['not fetchable here']} not fetchable "
          f"here, {c['failed']} failed, {c['not run']} not run, of {c['total']} ({c['distinct_scripts_in_plan']} in the plan)")
    print(f"report kept: {report} (add the kept reports up with --tally)")
    return 0


def tally(argv: list[str]) -> int:
    """The kept reports against the plan of a matrix (--matrix, default the project's)."""
    from runner.compose.plan import make_plan
    from runner.compose.project import load_project
    from runner.rehearse.cover import scripts
    from runner.rehearse.steps import STATUS_RANK, script_id

    matrix = argv[argv.index("--matrix") + 1] if "--matrix" in argv else None
    project = load_project(matrix, Path(__file__).resolve().parent.parent / "pack")  # the seed matrix beside tests/
    plan = make_plan(project.targets, project.recipes)
    latest: dict[tuple[str, str], dict] = {}
    best: dict[str, str] = {}
    kept = sorted(KEPT.glob("*.json"))
    for file in kept:  # oldest first: a later rehearsal of an image replaces an earlier one
        for image in json.loads(file.read_text())["images"]:
            latest[(image["tag"], image["platform"])] = image
            for s in image["steps"]:
                if s.get("script"):
                    best[s["script"]] = min(best.get(s["script"], "not run"), s["status"], key=STATUS_RANK.get)
    verdicts: Counter[str] = Counter()
    for leaf in plan.leaves:
        image = latest.get((leaf.target.tag, leaf.platform))
        if image:
            why = reason(image)
            verdicts[image["verdict"]] += 1
        else:
            ids = [script_id(s) for s in scripts(leaf)]
            found = Counter(best.get(i, "never rehearsed") for i in ids)
            why = "not rehearsed; its scripts elsewhere: " + ", ".join(f"{n} {k}" for k, n in sorted(found.items()))
            verdicts["not rehearsed, every script rehearsed elsewhere" if "never rehearsed" not in found
                     else "not rehearsed, some script never rehearsed"] += 1
        print(f"{leaf.target.tag:<40} {leaf.platform:<12} {why}")
    every = {script_id(s) for leaf in plan.leaves for s in scripts(leaf)}
    found = Counter(best.get(i, "never rehearsed") for i in every)
    print(f"\n{len(plan.leaves)} target-platforms, {len(kept)} kept reports: " + ", ".join(f"{n} {k}" for k, n in verdicts.most_common()))
    print(f"distinct scripts ({len(every)}), by their best outcome: " + ", ".join(f"{n} {k}" for k, n in found.most_common()))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--tally" in args:
        sys.exit(tally([a for a in args if a != "--tally"]))
    sys.exit(one_by_one([a for a in args if a != "--cover"]) if "--cover" in args else rehearse(args))
