"""How long planning takes: the whole seed matrix, and synthetic matrices of 1,000 to 10,000 targets.

Synthetic targets are the seed's targets with made-up service versions, so every recipe runs on
them. Prints seconds, microseconds per target (flat means linear growth) and the sharing ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from packaging.version import Version

from runner.compose.plan import make_plan
from runner.compose.project import _validate
from runner.model.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def varied(targets, recipes):
    """The seed targets whose recipes compose any service version: a recipe that pins an artifact per
    exact release (MindIE's ATB models, keyed by commit) refuses a made-up version, so those targets
    are left out of the synthetic matrices (and said so) rather than repeated unchanged."""
    keep, left = [], []
    for t in targets:
        release = ".".join(map(str, Version(t.service_version).release))
        try:
            make_plan([replace(t, service_version=f"{release}.999")], recipes)
            keep.append(t)
        except UserError:
            left.append(t.tag)
    return keep, left


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
    left = set(os.environ.get("PLAN_SPEED_LEFT_OUT", "").split())  # found by main(), in a process of its own
    targets = project.targets if n == 0 else synthetic([t for t in project.targets if t.tag not in left], n)
    start = time.perf_counter()
    plan = make_plan(targets, project.recipes)
    seconds = time.perf_counter() - start
    what = f"seed matrix ({len(targets)} targets)" if n == 0 else f"{n:>6} synthetic targets"
    print(f"{what}: {seconds:.3f} s, {seconds / len(targets) * 1e6:.0f} us/target, {len(plan.leaves)} target-platforms, "
          f"{plan.distinct_stages} distinct stages vs {plan.naive_stages} naive ({plan.naive_stages / plan.distinct_stages:.2f}x)",
          flush=True)


def left_out() -> None:
    project = _validate(ROOT / "matrix.yaml", ROOT / "pack")
    seed, left = varied(project.targets, project.recipes)
    print(json.dumps({"varied": len(seed), "left": left}))


def main() -> None:
    found = json.loads(subprocess.run([sys.executable, __file__, "left-out"], check=True, capture_output=True,
                                      text=True).stdout)
    if found["left"]:
        print(f"synthetic matrices vary {found['varied']} seed targets; {len(found['left'])} whose recipe pins an "
              f"artifact per exact version are left out ({', '.join(found['left'][:3])} ...)", flush=True)
    for n in (0, 1000, 2500, 5000, 10000):
        subprocess.run([sys.executable, __file__, str(n)], check=True, env={**os.environ,
                       "PLAN_SPEED_LEFT_OUT": " ".join(found["left"])})


if __name__ == "__main__":
    if len(sys.argv) > 1:
        left_out() if sys.argv[1] == "left-out" else one(int(sys.argv[1]))
    else:
        main()
