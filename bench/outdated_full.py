"""`runner outdated` over the whole matrix against the real package index, resolve included: prints
what it proposes (per service and backend), the catalog diff counts, the resolve's answers and how
long each phase takes. Writes nothing (the matrix is read, never edited). CI's test runs a small case.

Measured here (2 shared cores): `--no-resolve` 20-40 s (the index's answers, 8 packages at once); with
the resolve, the seed matrix's ~200 proposed images (~400 image-platforms) took longer than 36 min
cold, so pass `--no-resolve` or narrow with `--service` for a quick look."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "runner", "outdated", "--format", "json", *sys.argv[1:]],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"runner outdated exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    print(f"exit {done.returncode} in {wall:.0f} s; phases: {report['seconds']}")
    print("newest on the index:", ", ".join(f"{k} {v}" for k, v in sorted(report["newest_on_index"].items())))
    for p in report["proposals"]:
        print(f"  {p['backend']:5} {p['release']:12} {p['service']:7} {len(p['versions']):3} versions: "
              f"{p['versions'][-1]} .. {p['versions'][0]}")
    for pin in report["pins"]:
        print(f"  pin {pin['package']} ({pin['scope']}): {pin['pinned']} -> {pin['newest']}")
    print(f"held back: {len(report['waiting'])}; not checked here: {len(report['not_checked'])}")
    if report["catalog_diff"]:
        print("catalog diff (added per backend):",
              {b: c.get("added", 0) for b, c in report["catalog_diff"]["counts"].items()})
    resolve = report["resolve"]
    print(f"resolve: {resolve['images']} images on their platforms, {resolve['steps']} steps: {resolve['by_status']}")
    if report["unplanned"]:
        print(f"not planned: {report['unplanned']}")


if __name__ == "__main__":
    main()
