"""runner against the plain-docker lower bound, on the end-to-end fixture (6 target-platforms, amd64 and
arm64 through qemu), each measured in the same run on the same private daemon and registry:

- cold build: `runner build` vs `docker build` of the Dockerfiles `runner dockerfile` exports (2 at a
  time, as runner builds), both from an empty BuildKit cache;
- warm build: the same again, nothing changed (runner remembers its smoke results by image);
- republish of unchanged images: `runner publish` vs `docker push` of each single-arch image plus
  `skopeo copy --all` of each -dev index;
- promote: `runner promote` (final tags already there) vs `skopeo copy --all` of each -dev to its tag.

Goals: warm build and republish within 1.3x of plain. Prints medians of RUNS (default 3). Needs root
and the tools .ci/run installs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e import infra  # noqa: E402

RUNS = int(os.environ.get("RUNS", "3"))
GOOD = ("demo1.0-echo0.1.0", "demo1.0-echo0.2.0")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dockerfiles(e) -> list[tuple[str, str, Path]]:
    out = []
    for tag in (*GOOD, "demo1.0-echo0.3.0"):
        for platform in ("linux/amd64", "linux/arm64"):
            ctx = e.root / "plain" / f"{tag}-{platform.split('/')[1]}"
            ctx.mkdir(parents=True, exist_ok=True)
            text = e.runner("dockerfile", tag, "--platform", platform, "--form", "compat").stdout
            (ctx / "Dockerfile").write_text(text)
            out.append((tag, platform, ctx))
    return out


def plain_build(e, files) -> None:
    def one(item) -> None:
        tag, platform, ctx = item
        e.docker("build", "--platform", platform, "--network", "host", "-t", f"plain/{tag}:{platform.split('/')[1]}",
                 str(ctx))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, files))


def empty_cache(e) -> None:
    e.docker("builder", "prune", "-af", check=False)
    ids = e.docker("images", "-q", "--filter", "reference=runner-build/*").stdout.split()
    ids += e.docker("images", "-q", "--filter", "reference=plain/*").stdout.split()
    if ids:
        e.docker("rmi", "-f", *set(ids), check=False)


def row(name: str, runner_s: list[float], plain_s: list[float], goal: float | None) -> None:
    r, p = statistics.median(runner_s), statistics.median(plain_s)
    verdict = "" if goal is None else (" (goal <= %.1fx: %s)" % (goal, "met" if r / p <= goal else "NOT met"))
    print(f"{name:<28} runner {r:7.2f} s   plain {p:7.2f} s   ratio {r / p:5.2f}x{verdict}", flush=True)


def main() -> None:
    missing = infra.missing_tools()
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (see .ci/run)")
    e = infra.start()
    os.environ["DOCKER_CONFIG"] = str(e.root / "docker-config")  # the plain pushes' login stays in the temp dir
    os.environ["DOCKER_BUILDKIT"] = "1"  # the exported Dockerfiles mount caches, as runner's builds do
    try:
        files = dockerfiles(e)
        cold_r, cold_p, warm_r, warm_p = [], [], [], []
        for _ in range(RUNS):
            empty_cache(e)
            cold_p.append(timed(lambda: plain_build(e, files)))
            warm_p.append(timed(lambda: plain_build(e, files)))
            empty_cache(e)
            cold_r.append(timed(lambda: e.runner("build", "--no-smoke-cache")))
            warm_r.append(timed(lambda: e.runner("build")))
        row("cold build", cold_r, cold_p, None)
        row("warm build", warm_r, warm_p, 1.3)

        reg = ["--registry", e.registry, "--service-version", "0.1"]
        e.runner("publish", *reg)  # first publish: pushes everything
        repub_r = [timed(lambda: e.runner("publish", *reg)) for _ in range(RUNS)]
        repo = f"{e.registry}/e2e/runner"
        auth = ["--src-tls-verify=false", "--dest-tls-verify=false"]

        def plain_republish() -> None:
            e.docker("login", "-u", e.username, "--password-stdin", e.registry, input=e.password)
            for p in ("linux-amd64", "linux-arm64"):
                ref = f"{repo}:{GOOD[0]}-{p}"
                e.docker("tag", f"runner-build/{GOOD[0]}:{p}", ref)
                e.docker("push", ref)
            e.skopeo("copy", *auth, "--all", f"docker://{repo}:{GOOD[0]}-dev", f"docker://{repo}:{GOOD[0]}-dev")

        repub_p = [timed(plain_republish) for _ in range(RUNS)]
        row("republish (unchanged)", repub_r, repub_p, 1.3)

        promote = ["--registry", e.registry, "--service-version", "0.1"]
        e.runner("promote", *promote)
        prom_r = [timed(lambda: e.runner("promote", *promote)) for _ in range(RUNS)]
        prom_p = [timed(lambda: e.skopeo("copy", *auth, "--all", f"docker://{repo}:{GOOD[0]}-dev",
                                         f"docker://{repo}:{GOOD[0]}")) for _ in range(RUNS)]
        row("promote (already done)", prom_r, prom_p, None)
    finally:
        infra.stop(e)


if __name__ == "__main__":
    main()
