"""Rehearse the whole seed matrix (or a selection) on the local Docker daemon and print, per target and
platform, its verdict and the reason, then the distinct-script coverage: the figures the README gives.

Needs root, a running daemon (DOCKER_HOST) and debootstrap; it takes hours and tens of GB for the whole
matrix (every image's downloads); `--cover` rehearses only the fewest target-platforms that run every
distinct recipe script, one at a time, the largest gain first. Every report is kept whole in
~/.cache/runner-bench/rehearsals, and each target-platform's outcome in bench/rehearsals.json (in the
repository: the README's figures add up from it on any machine, and a later rehearsal of a
target-platform replaces its record), and

    python bench/rehearse_all.py [--cover] [runner rehearse filters...]
    python bench/rehearse_all.py --tally [--matrix M]
    python bench/rehearse_all.py --record REPORT... --commit C   (a kept report into the records)

adds the records up against a matrix's plan: each target-platform's latest verdict, and for one not
rehearsed, what the rehearsals of other images found for the scripts it runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from runner.rehearse.steps import STATUS_RANK

KEPT = Path.home() / ".cache" / "runner-bench" / "rehearsals"
RECORDS = Path(__file__).resolve().parent / "rehearsals.json"


def reason(image: dict) -> str:
    """An image's verdict and why, in one line."""
    why = image["verdict"]
    if why == "failed step":
        step = next((s for s in image["steps"] if s["status"] == "failed"), None)
        why += f": [{step['stage']}] {step['title']}" if step else f": {image['error'][:120]}"
    elif why == "not runnable here":
        needs = sorted({t for s in image["steps"] for t in s.get("needs", ())})
        stopped = next((s for s in image["steps"] if s["status"] == "not runnable here"), None)
        why += f": [{stopped['stage']}] {stopped['title']} needs {', '.join(needs)}" if stopped else ""
    elif why == "not fetchable here":
        urls = sorted({u for s in image["steps"] for u in s["urls"]})
        why += ": " + ", ".join(urls[:3]) + (" ..." if len(urls) > 3 else "")
    elif why == "stand-in not built":
        why += ": " + (image["error"].strip().splitlines() or [""])[-1][:160]
    elif why == "smoke failed":
        why += ": " + ", ".join(c["name"] for c in image["smoke"] if not c["passed"])
    if image["smoke"]:  # an image that was built despite a step it lacks: how far its checks went
        why += f" (smoke {sum(c['passed'] for c in image['smoke'])}/{len(image['smoke'])})"
    return why


def record(image: dict, commit: str, at: str) -> dict:
    """A target-platform's outcome as bench/rehearsals.json keeps it: its verdict and why, and the best
    status of each script it ran (by the script's hash, as the report names it)."""
    found: dict[str, str] = {}
    for s in image["steps"]:
        if s.get("script"):
            found[s["script"]] = min(found.get(s["script"], "not run"), s["status"], key=STATUS_RANK.get)
    return {"tag": image["tag"], "platform": image["platform"], "verdict": image["verdict"], "why": reason(image),
            "seconds": image["seconds"], "commit": commit, "at": at, "scripts": dict(sorted(found.items()))}


def keep(records: list[dict], file: Path = RECORDS) -> None:
    """Merge records into the file, a later one of a target-platform replacing the earlier, written whole
    (a new file moved over the old one: a bench stopped half-way leaves it as it was or complete)."""
    kept = json.loads(file.read_text()) if file.exists() else {}
    for r in records:  # a report recorded late (--record) does not replace a later rehearsal's record
        if not r.get("scripts"):  # no recipe script ran (its stand-in was not built): nothing to say of it
            continue
        key = f"{r['tag']} {r['platform']}"
        if key not in kept or r["at"] >= kept[key]["at"]:
            kept[key] = r
    new = file.with_suffix(".json.new")
    new.write_text(json.dumps(dict(sorted(kept.items())), indent=1) + "\n")
    new.replace(file)


def commit_of_checkout() -> str:
    """The commit the rehearsal ran at, with "+changes" when the checkout had uncommitted ones."""
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src", "pack"],
                           capture_output=True, text=True)
    return (head.stdout.strip() or "unknown") + ("+changes" if dirty.stdout.strip() else "")


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
    commit, at = commit_of_checkout(), datetime.now(timezone.utc).isoformat(timespec="seconds")  # what the run ran
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
    print("distinct scripts: " + ", ".join(f"{c.get(k, 0)} {k}" for k in STATUS_RANK)
          + f", of {c['total']} ({c['distinct_scripts_in_plan']} in the plan)")
    keep([record(image, commit, at) for image in result["images"]])
    print(f"report kept: {report}; outcomes recorded in {RECORDS} (add them up with --tally)")
    return 0


def tally(argv: list[str], file: Path = RECORDS) -> int:
    """The recorded outcomes against the plan of a matrix (--matrix, default the project's)."""
    from runner.compose.plan import make_plan
    from runner.compose.project import load_project
    from runner.rehearse.cover import scripts
    from runner.rehearse.steps import script_id

    matrix = argv[argv.index("--matrix") + 1] if "--matrix" in argv else None
    project = load_project(matrix, Path(__file__).resolve().parent.parent / "pack")  # the seed matrix beside tests/
    plan = make_plan(project.targets, project.recipes)
    records = json.loads(file.read_text()) if file.exists() else {}
    best: dict[str, str] = {}
    for r in records.values():
        for script, status in r["scripts"].items():
            best[script] = min(best.get(script, "not run"), status, key=STATUS_RANK.get)
    verdicts: Counter[str] = Counter()
    for leaf in plan.leaves:
        r = records.get(f"{leaf.target.tag} {leaf.platform}")
        if r:
            why = f"{r['why']}  [{r['commit']}, {r['at'][:10]}]"
            verdicts[r["verdict"]] += 1
        else:
            ids = [script_id(s) for s in scripts(leaf)]
            found = Counter(best.get(i, "never rehearsed") for i in ids)
            why = "not rehearsed; its scripts elsewhere: " + ", ".join(f"{n} {k}" for k, n in sorted(found.items()))
            verdicts["not rehearsed, every script rehearsed elsewhere" if "never rehearsed" not in found
                     else "not rehearsed, some script never rehearsed"] += 1
        print(f"{leaf.target.tag:<40} {leaf.platform:<12} {why}")
    every = {script_id(s) for leaf in plan.leaves for s in scripts(leaf)}
    found = Counter(best.get(i, "never rehearsed") for i in every)
    print(f"\n{len(plan.leaves)} target-platforms, {len(records)} recorded in {file.name}: "
          + ", ".join(f"{n} {k}" for k, n in verdicts.most_common()))
    print(f"distinct scripts ({len(every)}), by their best outcome: " + ", ".join(f"{n} {k}" for k, n in found.most_common()))
    return 0


def record_reports(argv: list[str]) -> int:
    """Kept reports (runner rehearse --report files) into the records, rehearsed at the commit given."""
    if "--commit" not in argv or argv.index("--commit") + 1 >= len(argv):
        print("rehearse_all.py: --record REPORT... needs --commit C (the commit the reports were made at)", file=sys.stderr)
        return 2
    i = argv.index("--commit")
    commit, files = argv[i + 1], [Path(a) for a in argv[:i] + argv[i + 2:]]
    for f in files:  # a kept report is named by when its rehearsal started
        try:
            at = datetime.strptime(f.stem, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc).isoformat(timespec="seconds")
        except ValueError:
            at = datetime.fromtimestamp(f.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        keep([record(image, commit, at) for image in json.loads(f.read_text())["images"]])
    print(f"{len(files)} reports recorded in {RECORDS}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--record" in args:
        sys.exit(record_reports([a for a in args if a != "--record"]))
    if "--tally" in args:
        sys.exit(tally([a for a in args if a != "--tally"]))
    sys.exit(one_by_one([a for a in args if a != "--cover"]) if "--cover" in args else rehearse(args))
