"""Stand-ins for real runner images, built on the local BuildKit from the package index: a Debian base
made offline-capable with debootstrap, the service's real packages (vLLM with its torch and Ray,
SGLang, VoxBox), and the environment the matrix target's recipe gives its image. They are what can
be had here of a vendor base image; the checks a stand-in cannot pass say so in the tests.

Downloads are kept on this machine between runs (RUNNER_TEST_CACHE, default ~/.cache/runner-tests):
the Debian root file system as a tarball, and each image's wheels in a folder served to the build
over loopback; a rerun downloads nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import infra

CACHE = infra.TEST_CACHE
SUITE = "bookworm"  # Debian 12: python 3.11, glibc 2.36
PYTHON, GLIBC = "3.11", "2_36"
BASE = f"runner-standin/debian:{SUITE}"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Standin:
    """A stand-in image: what it installs, and the target whose recipe environment it carries."""

    name: str
    target: str  # e.g. cuda12.8-vllm0.14.1
    requirements: tuple[str, ...]
    torch: str = ""  # torch with its torchvision and torchaudio, as the recipes' torch stage: a layer of its own
    build_constraints: tuple[str, ...] = ()  # for sdists the stand-in builds into wheels, as the recipe says
    # requirements the recipe installs in a later step, installed again over the rest here: their console
    # scripts win, as in the image (vllm-omni's `vllm` over vLLM's)
    later: tuple[str, ...] = ()
    # the CUDA driver's user-space library where the vendor base has its forward-compatibility copy
    # (/usr/local/cuda/compat/libcuda.so.1, which a service's kernels link to): here a stub of every
    # driver function the installed libraries ask for, each answering "no device"
    driver_stub: bool = False
    # dependencies of the service the index cannot install here, left out of the set (an override that
    # never applies, as the rehearsal's official stand-in does); `pip check` then names exactly these
    leave_out: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return f"runner-standin/{self.name}:latest"


def timed(what: str):
    """Print how long a slow part took (CI shows it)."""
    @contextmanager
    def clock():
        start = time.monotonic()
        yield
        print(f"[standin] {what}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)

    return clock()


def rootfs() -> Path:
    """A Debian root file system tarball with python3, pip, tini, procps, patch and libnuma (debootstrap,
    cached); libnuma1 as the runtime stage installs it (kit.TOOLS_APT): SGLang's kernels load it."""
    packages = ",".join(sorted({"python3", "python3-pip", "tini", "procps", "patch", "libnuma1"}))
    tar = CACHE / f"debian-{SUITE}-{hashlib.sha256(packages.encode()).hexdigest()[:12]}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / f"{tar.stem}.root"
    shutil.rmtree(root, ignore_errors=True)
    with timed(f"debootstrap {SUITE} with {packages}"):
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={packages}", SUITE, str(root)],
                       check=True, capture_output=True)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (root / leftover).glob("*"):
            if f.is_file():
                f.unlink()
    with tarfile.open(f"{tar}.part", "w") as out:
        out.add(root, arcname=".")
    Path(f"{tar}.part").rename(tar)
    shutil.rmtree(root, ignore_errors=True)
    return tar


# One preparation of the wheelhouse at a time: the prefetch's and a test's share its files
_PREPARING = threading.RLock()


def prefetch(e: infra.Environment, standins: list[Standin]) -> threading.Thread:
    """Resolve and download the stand-ins' wheel sets in the background, in the order given, while the
    session's other tests keep the daemon busy (the downloads wait on the network, not on the cores).
    A test that needs a set waits for it; a set the prefetch could not make, its test makes again."""
    def run() -> None:
        for standin in standins:
            try:
                wheelhouse(e, standin)
            except Exception as error:  # said here; the test that needs the set tries again and fails as itself
                print(f"[standin] prefetch of {standin.name} stopped: {str(error)[-500:]}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=run, name="standin-prefetch", daemon=True)
    thread.start()
    return thread


def wheelhouse(e: infra.Environment, standin: Standin) -> tuple[Path, str]:
    """The stand-in's wheel set, made once (see _wheelhouse), by the prefetch or here."""
    with _PREPARING:
        ensure_base(e)
        return _wheelhouse(e, standin)


def _wheelhouse(e: infra.Environment, standin: Standin) -> tuple[Path, str]:
    """One folder of wheels on this machine that every stand-in installs from. Each stand-in's set is
    resolved by uv for the stand-in's python and glibc (pip's own resolver backtracks for many minutes
    on vLLM's set), then pip downloads exactly those pins inside the base; an sdist is built into a
    wheel there, under the recipe's build constraints. Downloaded once per set."""
    folder = CACHE / "wheelhouse"
    wanted = list(torch_set(standin.torch)) + list(standin.requirements)
    left_out = ("|", *standin.leave_out) if standin.leave_out else ()
    key = hashlib.sha256("\n".join([SUITE, *wanted, "|", *standin.build_constraints, *left_out]).encode()).hexdigest()[:16]
    marker = folder / ".sets" / key
    pins = folder / ".sets" / f"{key}.txt"
    if marker.exists():
        return folder, f".sets/{pins.name}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    (folder / ".build-constraints.txt").write_text("".join(f"{c}\n" for c in standin.build_constraints))
    overrides = folder / ".sets" / f"{key}.overrides.txt"
    overrides.write_text("".join(f"{name}; sys_platform == 'never'\n" for name in standin.leave_out))
    with timed(f"resolve {' '.join(wanted)}"):
        _compile(wanted, folder / ".build-constraints.txt", overrides, pins)
    pip = "python3 -m pip {} -q"
    script = (f"PIP_CONSTRAINT=\"$BUILD_CONSTRAINT\" {pip.format('download')} --no-deps --prefer-binary --dest /wheels "
              f"-r /wheels/.sets/{pins.name}\n"
              "for sdist in /wheels/*.tar.gz /wheels/*.zip; do\n"
              "  [ -e \"$sdist\" ] || continue\n"
              f"  PIP_CONSTRAINT=\"$BUILD_CONSTRAINT\" {pip.format('wheel')} --no-deps --wheel-dir /wheels \"$sdist\" "
              "&& rm \"$sdist\"\n"
              "done\n")
    with timed(f"download {' '.join(wanted)}"):
        # the host's CA bundle: where a network re-signs TLS, it holds that network's authority too.
        # pip's settings go by environment so the isolated build environments get them as well
        # (PIP_CONSTRAINT: the build constraints, for the sdists prepared and built)
        e.docker("run", "--rm", "--network", "host", "-v", f"{folder}:/wheels", "-v", f"{HOST_CA}:/etc/runner-ca.crt:ro",
                 "-e", "PIP_CERT=/etc/runner-ca.crt", "-e", "PIP_NO_CACHE_DIR=1", "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1",
                 "-e", "BUILD_CONSTRAINT=/wheels/.build-constraints.txt" if standin.build_constraints else "BUILD_CONSTRAINT=",
                 BASE, "sh", "-ec", script, timeout=3600)
    marker.write_text("\n".join(wanted) + "\n")
    return folder, f".sets/{pins.name}"


def _compile(wanted: list[str], build_constraints: Path, overrides: Path, out: Path) -> None:
    from runner.verify.resolver import find_uv

    # the build constraints hold for the whole set too: pip applies them to every download it prepares.
    # A pre-release only where a package has nothing else (Ray's dashboard extra asks for OpenTelemetry
    # packages published as betas only) or where a requirement names one
    done = subprocess.run([find_uv(), "pip", "compile", "-", "--python-version", PYTHON, "--python-platform",
                           f"x86_64-manylinux_{GLIBC}", "--no-header", "--no-annotate", "--build-constraints",
                           str(build_constraints), "--constraint", str(build_constraints), "--override", str(overrides),
                           "--prerelease", "if-necessary-or-explicit", "--output-file", str(out)],
                          input="\n".join(wanted) + "\n", capture_output=True, text=True, timeout=900,
                          env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    if done.returncode != 0:
        raise RuntimeError(f"uv could not resolve {wanted}: {done.stderr[-3000:]}")


def torch_set(torch: str) -> tuple[str, ...]:
    """torch and its companions at the versions the recipes' torch stage pins."""
    from runner.compose.kit import TORCHVISION

    return (f"torch=={torch}", f"torchvision=={TORCHVISION[torch]}", f"torchaudio=={torch}") if torch else ()


def recipe_env(project, target: str, platform: str = "linux/amd64") -> dict[str, str]:
    """The environment the target's recipe gives its image (what the stand-in must carry)."""
    return project.leaf_stage(target, platform).env()


def ensure_base(e: infra.Environment) -> str:
    """The Debian base on the test daemon (imported from the cached root file system once)."""
    with _PREPARING:
        return _ensure_base(e)


def _ensure_base(e: infra.Environment) -> str:
    if e.docker("image", "inspect", BASE, check=False).returncode != 0:
        ctx = e.root / "standin-base"
        ctx.mkdir(exist_ok=True)
        shutil.copy(rootfs(), ctx / "rootfs.tar")
        with timed("import the Debian base"):
            e.docker("build", "-t", BASE, str(ctx), "-f", "-", input="FROM scratch\nADD rootfs.tar /\n")
    return BASE


def build(e: infra.Environment, standin: Standin, env: dict[str, str]) -> str:
    """Build the stand-in image on the test daemon; returns its reference (remove it with `remove`)."""
    from runner.verify.resolver import find_uv

    wheels, pins = wheelhouse(e, standin)  # the base too
    port = _stable_port(wheels)
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(wheels),
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # uv installs (unpacks and compiles the bytecode of) the wheels on every core, where pip took minutes
    # for one torch set; it is the host's uv, bound into each RUN from the build context, not a layer
    uv = "--mount=type=bind,source=uv,target=/usr/local/bin/uv UV_NO_CACHE=1 "
    install = f"RUN {uv}uv pip install --system --compile-bytecode --no-index --find-links http://127.0.0.1:{port}/ "
    try:
        infra.wait_for(lambda: infra.port_open(port), "the wheelhouse")
        ctx = e.root / f"standin-{standin.name}"
        ctx.mkdir(exist_ok=True)
        shutil.copy(find_uv(), ctx / "uv")
        shutil.copy(wheels / pins, ctx / "pins.txt")
        lines = [f"FROM {BASE}", "RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED"]
        if standin.torch:  # the same layer for every stand-in on this torch
            lines.append(install + " ".join(torch_set(standin.torch)))
        # exactly the set as uv resolved it for this stand-in (the wheelhouse holds other sets' releases
        # too), without what it leaves out, which a resolve would ask for again
        lines.append(f"RUN --mount=type=bind,source=pins.txt,target=/tmp/pins.txt {install.removeprefix('RUN ')}"
                     "--no-deps -r /tmp/pins.txt")
        if standin.later:
            lines.append(f"{install}--reinstall --no-deps " + " ".join(json.dumps(r) for r in standin.later))
        if standin.driver_stub:
            lines.append("RUN " + DRIVER_STUB.strip().replace("\n", " && \\\n    "))
        lines += [f"ENV {k}={json.dumps(v)}" for k, v in sorted(env.items()) if k != "PATH"]
        lines.append('ENTRYPOINT ["tini", "--"]')
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        with timed(f"build the {standin.name} stand-in"):  # BuildKit: the RUN lines bind uv and the pins
            done = subprocess.run([infra.DOCKER, "build", "--network", "host", "--progress", "plain", "-t", standin.image,
                                   str(ctx)], env={**e.env(), "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the {standin.name} stand-in did not build: {(done.stdout + done.stderr)[-3000:]}")
    finally:
        server.terminate()
        server.wait()
    return standin.image


# Builds the driver stub with the distribution's compiler and removes the compiler again: every `cu*`
# symbol a library linked to libcuda.so.1 leaves undefined becomes a function returning
# CUDA_ERROR_NO_DEVICE (100).
DRIVER_STUB = r"""
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev binutils >/dev/null
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site" -name '*.so*' -type f -exec sh -c 'objdump -p "$1" 2>/dev/null | grep -q "NEEDED *libcuda.so.1" && nm -D --undefined-only "$1"' _ {} \; | awk '{print $NF}' | sed 's/@.*//' | grep '^cu' | sort -u | awk '{print "int " $1 "(void) { return 100; }"}' >/tmp/libcuda.c
mkdir -p /usr/local/cuda/compat
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o /usr/local/cuda/compat/libcuda.so.1 /tmp/libcuda.c
rm /tmp/libcuda.c
apt-get purge -y -qq --auto-remove gcc libc6-dev binutils >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


def remove(e: infra.Environment, *images: str) -> None:
    """Remove stand-in images and the build cache they left (they are large)."""
    e.docker("rmi", "-f", *images, check=False)
    e.docker("builder", "prune", "-af", check=False)


def _stable_port(folder: Path) -> int:
    """The wheelhouse's port is part of each RUN line, so the same port keeps the layers cached."""
    port = 40000 + int(hashlib.sha256(str(folder).encode()).hexdigest(), 16) % 9000
    return port if not infra.port_open(port) else infra.free_port()
