"""The releases a package has on the package index, read through pip's configured index (its config
files, PIP_INDEX_URL, or UV_INDEX_URL when pip has none), never a hostname of our own."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from packaging.version import InvalidVersion, Version

from runner.model.errors import InfrastructureError, UserError

_AVAILABLE = re.compile(r"^Available versions:\s*(.*)$", re.MULTILINE)
TIMEOUT = 300  # one package's answer; the index can be slow, not hours slow


def _command(name: str, pre: bool) -> list[str]:
    argv = [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"]
    if pre:
        argv.append("--pre")
    if not os.environ.get("PIP_INDEX_URL") and (uv_index := os.environ.get("UV_INDEX_URL")):
        argv += ["--index-url", uv_index]  # one index configured for uv serves pip too
    return argv


def versions(name: str, pre: bool = False) -> list[Version]:
    """Every release of `name` on the index, newest first (pre-releases only with pre); a package the
    index does not have is an empty list."""
    try:
        done = subprocess.run(_command(name, pre), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"the package index did not answer for {name} in {TIMEOUT} s",
                                  advice="run again later") from None
    if done.returncode != 0:
        if "No matching distribution" in done.stderr:
            return []
        if "No module named pip" in done.stderr:
            raise UserError(f"{sys.executable} has no pip: runner reads the package index through pip's "
                            "configuration", hint="install runner into a venv made by `python3 -m venv` (setup.sh)")
        raise InfrastructureError(f"pip could not read {name}'s releases from the package index: "
                                  f"{done.stderr.strip()[-400:]}", advice="run again later")
    found = _AVAILABLE.search(done.stdout)
    out = []
    for text in (found.group(1).split(",") if found else ()):
        try:
            out.append(Version(text.strip()))
        except InvalidVersion:  # an old, non-PEP 440 release: nothing to propose from it
            continue
    return sorted(out, reverse=True)


def all_versions(names: Iterable[tuple[str, bool]], jobs: int = 8) -> dict[str, list[Version]]:
    """versions() of each (name, pre) at once: each answer takes seconds, mostly waiting."""
    names = list(dict.fromkeys(names))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        answers = list(pool.map(lambda item: versions(*item), names))
    return {name: found for (name, _), found in zip(names, answers)}


MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
GLIBC = "2_36"  # Debian 12's, the stand-ins' C library: a wheel for an older manylinux runs there


@functools.lru_cache(maxsize=None)
def has_wheel(requirement: str, platform: str, python: str) -> bool:
    """Whether the index has a wheel meeting `requirement` that pip installs on `platform` (linux/amd64,
    linux/arm64) under `python` (3.11): uv resolves it alone with builds refused (metadata only, no
    download). A package with x86_64 wheels only, say, has none for linux/arm64. An index that does not
    answer has none."""
    from runner.verify.resolver import find_uv

    machine = MACHINES.get(platform)
    if machine is None:
        return False
    argv = [find_uv(), "pip", "compile", "-", "--no-deps", "--only-binary", ":all:", "--python-version", python,
            "--python-platform", f"{machine}-manylinux_{GLIBC}", "--no-header", "--quiet", "--color", "never"]
    if os.environ.get("PIP_INDEX_URL"):
        argv += ["--index-url", os.environ["PIP_INDEX_URL"]]  # the index pip reads, as versions() does
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in ("UV_CACHE_DIR", "UV_INDEX_URL")}
    try:
        done = subprocess.run(argv, input=requirement + "\n", capture_output=True, text=True, timeout=TIMEOUT,
                              env=dict(env, UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never"))
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0
