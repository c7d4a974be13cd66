"""Rehearse the whole seed matrix (or a selection) on the local Docker daemon and print, per target and
platform, its verdict and the reason, then the distinct-script coverage: the figures the README gives.

Needs root, a running daemon (DOCKER_HOST) and debootstrap; it takes hours and tens of GB for the whole
matrix (every image's downloads). Usage: python bench/rehearse_all.py [runner rehearse filters...]"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "runner", "rehearse", "--report", str(report), *(argv or ["--all"])], text=True)
        elapsed = time.monotonic() - start
        if not report.exists():
            print(f"no report (runner exited {done.returncode})", file=sys.stderr)
            return 2
        result = json.loads(report.read_text())
    reasons: Counter[str] = Counter()
    for image in result["images"]:
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
        reasons[why] += 1
        print(f"{image['tag']:<40} {image['platform']:<12} {image['seconds']:>7.0f} s  {why}")
    print(f"\n{len(result['images'])} target-platforms in {elapsed / 60:.1f} min: {dict(result['verdicts'])}")
    for why, n in reasons.most_common():
        print(f"{n:>4}  {why}")
    c = result["coverage"]
    print(f"distinct scripts: {c['ran']} ran, {c['substituted']} substituted, {c['not fetchable here']} not fetchable "
          f"here, {c['failed']} failed, {c['not run']} not run, of {c['total']} ({c['distinct_scripts_in_plan']} in the plan)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
