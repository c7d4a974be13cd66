"""The releases a package has on the package index, and whether a stand-in can install one of its wheels.

Releases are read through pip's configured index (its config files, PIP_INDEX_URL, or UV_INDEX_URL when
pip has none); wheels from the index the source mirror reads (runner.verify.upstream.index_url), whose
downloads a rehearsal makes. Never a hostname of our own."""

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


GLIBC = 36  # Debian 12's C library, the stand-ins': a wheel for an older manylinux runs there


@functools.lru_cache(maxsize=None)
def has_wheel(requirement: str, platform: str, python: str) -> bool:
    """Whether a Debian 12 stand-in of `platform` can install a wheel of `requirement` under CPython `python`.

    Read from the project's JSON simple page (no download), as pip judges it: the wheel's tags, the
    release's Requires-Python, a yanked file only for an exact pin. A package with x86_64 wheels only,
    say, has none for linux/arm64. Where the page cannot be read (an index serving HTML only, the
    network) the answer is yes: the step then downloads and fails as written, never silently skipped."""
    import httpx
    from packaging.requirements import Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename

    from runner.model.naming import MACHINES
    from runner.verify.upstream import index_url

    machine = MACHINES.get(platform)
    if machine is None:
        return True
    wanted = Requirement(requirement)
    version = tuple(int(x) for x in python.split(".")[:2])
    platforms = [f"manylinux_2_{n}_{machine}" for n in range(GLIBC, 4, -1)] + \
        [f"manylinux{legacy}_{machine}" for legacy in ("2014", "2010", "1")]
    supported = {*cpython_tags(version, platforms=platforms), *compatible_tags(version, platforms=platforms)}
    exact = any(spec.operator in ("==", "===") for spec in wanted.specifier)
    try:
        r = httpx.get(f"{index_url()}{canonicalize_name(wanted.name)}/", timeout=60, follow_redirects=True,
                      headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        files = r.json()["files"] if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        files = None
    if files is None:
        return True
    for f in files:
        try:
            _, v, _, tags = parse_wheel_filename(f["filename"])
            pythons = SpecifierSet(f.get("requires-python") or "")
        except (ValueError, InvalidVersion, InvalidSpecifier, KeyError):
            continue  # an sdist, or a name that is not a wheel's
        if ((not f.get("yanked") or exact) and wanted.specifier.contains(v, prereleases=True)
                and pythons.contains(python, prereleases=True) and tags & supported):
            return True
    return False
