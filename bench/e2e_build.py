"""Cold and warm builds of the end-to-end fixture matrix on a real local BuildKit.

Starts the same daemon, registry and package index as the end-to-end tests, builds the fixture
matrix twice with `runner build --engine docker`, and prints wall times and BuildKit's executed and
cached RUN steps. Goal: warm under 10% of cold, zero executed steps. Needs root and the tools .ci/run
installs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e import infra  # noqa: E402


def main() -> None:
    missing = infra.missing_tools()
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (see .ci/run)")
    env = infra.start()  # refuses a dynamically linked busybox (the fixture's base would run nothing)
    try:
        rows = []
        for name in ("cold", "warm"):
            start = time.perf_counter()
            env.runner("build", "--report", str(env.root / f"{name}.json"))
            seconds = time.perf_counter() - start
            report = json.loads((env.root / f"{name}.json").read_text())
            steps, build = report["steps"], sum(i["build_seconds"] for i in report["images"])
            rows.append((name, seconds, build, steps["executed"]))
            print(f"{name}: {seconds:.2f} s in all, {build:.2f} s building (summed over images, smoke tests excluded), "
                  f"{steps['executed']} RUN steps executed, {steps['cached']} cached "
                  f"({steps['distinct_stages']} distinct stages, {len(report['images'])} target-platforms)", flush=True)
        ratio = rows[1][1] / rows[0][1]
        print(f"warm/cold: {ratio:.1%} in all (goal < 10%: {'met' if ratio < 0.1 else 'NOT met'}), "
              f"{rows[1][2] / rows[0][2]:.1%} of the build time; warm RUN steps executed: {rows[1][3]} "
              f"(goal 0: {'met' if rows[1][3] == 0 else 'NOT met'})")
    finally:
        infra.stop(env)


if __name__ == "__main__":
    main()
