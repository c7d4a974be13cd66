"""The container `dagger call select ... rehearse` runs in, built here from the module's own lines
(runner.dagger.rehearse) on a private dockerd, and the rehearsal run inside it as the function runs it.

No Dagger engine runs here, so three things stand in, each printed: `docker run` with every capability
this machine can give for the exec's insecure_root_capabilities, a Debian bookworm made with debootstrap for `debian:bookworm` (it
cannot be pulled here), and this machine's certificate authorities in the container (the network here
re-signs TLS). Everything else is the function's: its apt line, its pip line, its environment, its
`runner rehearse` arguments, and runner's own dockerd started inside the container.

Usage (root): python bench/dagger_rehearsal.py [runner rehearse filters; none: the default target]
Prints the container's build time, the rehearsal's time, verdicts and coverage. Removes what it made
but the cache (~/.cache/runner-bench/dagger-rehearsal: the Debian root file system and the sources)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from runner.dagger.rehearse import (CACHE, ENV, INSTALL_RUNNER, INSTALL_SYSTEM, PROJECT, REHEARSAL_IMAGE,  # noqa: E402
                                    RUNNER, rehearse_argv)
from runner.engines.private_daemon import PrivateDaemon  # noqa: E402
from runner.model.selection import Selection  # noqa: E402
from runner.rehearse.standin import LOCAL_AUTHORITIES  # noqa: E402

# the exec's insecure_root_capabilities: every capability this machine has to give (it lacks CAP_SYS_RESOURCE,
# so `--privileged`, which asks for all, cannot start here), no seccomp or AppArmor profile, writable /proc and /sys
ROOT_CAPABILITIES = ("--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined", "--security-opt",
                     "apparmor=unconfined", "--security-opt", "systempaths=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw")
BENCH_CACHE = Path.home() / ".cache" / "runner-bench" / "dagger-rehearsal"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BASE = "runner-bench/debian:bookworm"
IMAGE = "runner-bench/dagger-rehearsal:latest"
# what the module's `checkout` argument lets in (runner.dagger.rehearse.RunnerCheckout)
CHECKOUT = ("pyproject.toml", "src/runner", "matrix.yaml", "pack")


def say(line: str) -> None:
    print(f"[dagger-rehearsal] {line}", flush=True)


def docker(host: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/docker", *args], env={**os.environ, "DOCKER_HOST": host}, check=True, **kw)


def debian_root() -> Path:
    """The rehearsal's own Debian root file system (debootstrap, once per cache)."""
    os.environ["RUNNER_CACHE_DIR"] = str(BENCH_CACHE)
    from runner.rehearse.standin import rootfs

    return rootfs("linux/amd64")


def context(folder: Path) -> None:
    """The build context: the checkout as the module lets it in, this machine's CAs and the Dockerfile
    made of the module's lines."""
    for item in CHECKOUT:
        source, dest = ROOT / item, folder / "project" / item
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__")) if source.is_dir()
         else shutil.copy2(source, dest))
    shutil.copytree(LOCAL_AUTHORITIES, folder / "ca")
    (folder / "Dockerfile").write_text("\n".join([
        f"FROM {BASE}",
        f"RUN {INSTALL_SYSTEM}",
        # stands in: this network re-signs TLS, so the container trusts this machine's authorities as it does,
        # where runner's rehearsal finds them (and hands them on to its stand-ins)
        f"COPY ca/ {LOCAL_AUTHORITIES}/",
        "RUN update-ca-certificates >/dev/null",
        f"ENV SSL_CERT_FILE={CA_BUNDLE} PIP_CERT={CA_BUNDLE} REQUESTS_CA_BUNDLE={CA_BUNDLE}",
        f"COPY project {PROJECT}",
        f"WORKDIR {PROJECT}",
        f"RUN {INSTALL_RUNNER}",
        *(f"ENV {k}={v}" for k, v in ENV.items()), ""]))


def main() -> int:
    args = sys.argv[1:]
    say(f"stands in: `docker run` with root capabilities ({' '.join(ROOT_CAPABILITIES)}) for the exec's "
        f"insecure_root_capabilities; {BASE} (debootstrap) for "
        f"{REHEARSAL_IMAGE}, which cannot be pulled here; this machine's certificate authorities in the container, "
        "as the network here re-signs TLS")
    root = Path(tempfile.mkdtemp(prefix="rk-dr-", dir="/tmp"))
    daemon = PrivateDaemon(root / "engine")
    cache = BENCH_CACHE / "inside"
    try:
        start = time.monotonic()
        tar = debian_root()
        daemon.start()
        with open(tar, "rb") as f:
            docker(daemon.host, "import", "-", BASE, stdin=f, capture_output=True)
        context(root / "context")
        docker(daemon.host, "build", "--network", "host", "-t", IMAGE, str(root / "context"))
        built = time.monotonic() - start
        say(f"the function's container: built in {built:.0f} s")
        # the Debian root file system the rehearsal inside makes its stand-ins from: given, not made again
        (cache / "rehearsal").mkdir(parents=True, exist_ok=True)
        if not (cache / "rehearsal" / tar.name).exists():
            os.link(tar, cache / "rehearsal" / tar.name)
        mounts = ["-v", f"{cache}:{CACHE}"]
        argv = rehearse_argv(Selection(include_deprecated=False), False, False, "json") + args
        say(f"runs: {RUNNER} {' '.join(argv)}")
        start = time.monotonic()
        done = subprocess.run(["/usr/bin/docker", "run", "--rm", *ROOT_CAPABILITIES, "--network", "host", *mounts, IMAGE,
                               RUNNER, *argv], env={**os.environ, "DOCKER_HOST": daemon.host}, capture_output=True,
                              text=True)
        seconds = time.monotonic() - start
        print(done.stderr[-3000:], file=sys.stderr)
        if not done.stdout.strip().startswith("{"):
            say(f"runner rehearse exited {done.returncode} without a report")
            return 1
        report = json.loads(done.stdout)
        for image in report["images"]:
            passed = sum(c["passed"] for c in image["smoke"])
            say(f"{image['tag']} on {image['platform']}: {image['verdict']} in {image['seconds']:.0f} s, "
                f"{passed} of {len(image['smoke'])} smoke checks passed")
        c = report["coverage"]
        say(f"runner rehearse in the container: exit {done.returncode} in {seconds:.0f} s; distinct scripts: {c['ran']} "
            f"ran, {c['substituted']} substituted, {c['not fetchable here']} not fetchable, {c['failed']} failed "
            f"of {c['total']}")
        return done.returncode
    finally:
        daemon.stop(remove=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(cache / "engine", ignore_errors=True)  # the inner dockerd's data: images are large


if __name__ == "__main__":
    sys.exit(main())
