"""How long `runner matrix --format json` takes over the whole seed matrix, as a whole process.

Prints the median and best of N runs, cold (RUNNER_NO_CACHE=1: YAML, pydantic and recipes every
time) and warm (the validated matrix served from runner's cache). Goal: warm under 0.3 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("RUNS", "10"))


def measure(env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system of the child) seconds per run."""
    import resource

    times, cpu = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", "matrix", "--format", "json"], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        base = {**os.environ, "RUNNER_CACHE_DIR": cache}
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        for name, env in (("cold (no cache)", {**base, "RUNNER_NO_CACHE": "1"}), ("warm (cached)", base)):
            t, cpu = measure(env)
            print(f"runner matrix --format json, {name}: median {statistics.median(t):.3f} s wall, "
                  f"{statistics.median(cpu):.3f} s CPU (goal cold: 0.3 s CPU); best {min(t):.3f} s over {RUNS} runs")
        start = time.perf_counter()
        for _ in range(RUNS):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        print(f"python startup alone: {(time.perf_counter() - start) / RUNS:.3f} s")


if __name__ == "__main__":
    main()
