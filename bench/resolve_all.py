"""`runner resolve` over the whole matrix (gpustack-runner 0.1.32.post1's 246 images; deprecated ones with
--include-deprecated) against the real package index: install steps per status, the images that do not
hold together as one set, what cannot be reached from here, and how long it took cold and from the
cache. CI resolves the seed matrix and the newest layered rows (tests/test_resolve.py); this is the rest.

Usage: python bench/resolve_all.py [runner resolve options, e.g. --backend cuda]"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cache: str) -> tuple[int, dict, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "runner", "resolve", "--format", "json", *sys.argv[1:]], cwd=ROOT,
                          capture_output=True, text=True, env={**__import__("os").environ, "RUNNER_CACHE_DIR": cache})
    if done.returncode not in (0, 2) or not done.stdout:
        sys.exit(f"runner resolve exited {done.returncode}: {done.stderr[-2000:]}")
    return done.returncode, json.loads(done.stdout), time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="resolve-all-") as cache:
        code, data, cold = run(cache)
        _, _, warm = run(cache)
    steps = data["steps"]
    images = {(s["tag"], s["platform"]) for s in steps}
    print(f"exit {code}: {len(steps)} install steps of {len(images)} image-platforms; cold {cold:.0f} s, "
          f"from the cache {warm:.1f} s")
    print("steps by status:", dict(Counter(s["status"] for s in steps if s["step"])))
    whole = [s for s in steps if s["step"] == 0]
    broken = sorted({s["tag"] for s in whole if s["status"] == "conflict"})
    print(f"images as one set: {len(whole)} checked, {len(broken)} do not hold together: {', '.join(broken) or '-'}")
    unreachable = Counter(s["message"].split(": ", 1)[-1][:120] for s in steps if s["status"] == "not-checked")
    for why, n in unreachable.most_common():
        print(f"not checked here ({n} steps): {why}")


if __name__ == "__main__":
    main()
