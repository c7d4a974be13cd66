"""How long planning takes: the whole seed matrix, and synthetic matrices of 1,000 to 10,000 targets.

Synthetic targets are the seed's targets with made-up service versions, so every recipe runs on
them. Prints seconds, microseconds per target (flat means linear growth) and the sharing ratio.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from packaging.version import Version

from runner.compose.plan import make_plan
from runner.compose.project import _validate

ROOT = Path(__file__).resolve().parents[1]


def synthetic(targets, n: int):
    out = []
    i = 0
    while len(out) < n:
        for t in targets:
            if len(out) == n:
                break
            release = ".".join(map(str, Version(t.service_version).release))
            out.append(replace(t, service_version=f"{release}.{i}"))
        i += 1
    return out


def one(n: int) -> None:
    """Plan n targets once, in this fresh process (recipes keep memos, so a second run would be warm)."""
    project = _validate(ROOT / "matrix.yaml", ROOT / "pack")
    targets = project.targets if n == 0 else synthetic(project.targets, n)
    start = time.perf_counter()
    plan = make_plan(targets, project.recipes)
    seconds = time.perf_counter() - start
    what = f"seed matrix ({len(targets)} targets)" if n == 0 else f"{n:>6} synthetic targets"
    print(f"{what}: {seconds:.3f} s, {seconds / len(targets) * 1e6:.0f} us/target, {len(plan.leaves)} target-platforms, "
          f"{plan.distinct_stages} distinct stages vs {plan.naive_stages} naive ({plan.naive_stages / plan.distinct_stages:.2f}x)",
          flush=True)


def main() -> None:
    for n in (0, 1000, 2500, 5000, 10000):
        subprocess.run([sys.executable, __file__, str(n)], check=True)


if __name__ == "__main__":
    one(int(sys.argv[1])) if len(sys.argv) > 1 else main()
