"""Patches proven against the source they patch: every patch set a plan applies (the files a stage
writes to /workspace/patches/<service>/ and the step that runs `patch -p1 --forward` over them) is
applied, in the build's order and with the build's command, to the real source of the version the
stage builds, taken from the source mirror (runner.verify.upstream). A patch that no longer applies is
a finding naming the file, the version and patch's own output; a version whose source cannot be had
here is "not checked here", with the reason.

A patch for an installed package (`site_packages("vllm")`) applies in the folder that holds the
package, which in a release's source tree is the folder holding `vllm/__init__.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.compose.requirements import canonical
from runner.compose.stages import File, Run, Stage
from runner.model.files import JsonCache
from runner.verify.upstream import UPSTREAMS, Upstreams

PATCHES = "/workspace/patches/"
_INSTALLED = re.compile(r"pip show ([A-Za-z0-9._-]+)")
_PATCHED = re.compile(r"^(?:---|\+\+\+) [^/\s]+/(\S+)", re.M)  # the paths a -p1 patch names


@dataclass(frozen=True)
class PatchSet:
    """The patches one stage applies to one version of a service, in the order it applies them."""

    service: str
    version: str
    patches: tuple[tuple[str, str], ...]  # (file name, text)
    installed: str = ""  # the distribution whose installed folder is patched ("" for a source tree)
    stages: tuple[str, ...] = ()


@dataclass
class PatchCheck:
    """What applying one patch set to its real source showed."""

    service: str
    version: str
    patches: list[str]
    status: str  # applies, fails, not-checked
    output: str = ""
    failed: str = ""  # the first patch that does not apply
    cached: bool = False
    stages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        where = f"{self.service} {self.version}"
        if self.status == "fails":
            return f"{self.failed}: the patch does not apply to {where}:\n{self.output.rstrip()}"
        if self.status == "not-checked":
            return f"not checked here: {', '.join(self.patches)} on {where}: {self.output}"
        return f"{len(self.patches)} patch(es) apply to {where}"


def patch_sets(stages: Iterable[Stage]) -> list[PatchSet]:
    """Every distinct patch set the stages apply, with the version each stage builds."""
    found: dict[tuple, PatchSet] = {}
    for stage in stages:
        files = [s for s in stage.steps if isinstance(s, File) and s.path.startswith(PATCHES)]
        if not files:
            continue
        args = {a.name: a.value for s in stage.chain() for a in s.args}
        by_service: dict[str, list[File]] = {}
        for f in files:
            by_service.setdefault(f.path[len(PATCHES):].split("/", 1)[0], []).append(f)
        for service, mine in by_service.items():
            run = next((s for s in stage.steps if isinstance(s, Run) and mine[0].path in s.script), None)
            installed = _INSTALLED.search(run.script.split("\n", 1)[0]) if run else None
            version = args.get(f"{service.upper().replace('-', '_')}_VERSION", "")
            patches = tuple((f.path.rsplit("/", 1)[1], f.content) for f in mine)
            key = (service, version, patches, installed[1] if installed else "")
            known = found.get(key)
            found[key] = PatchSet(service, version, patches, key[3], (*(known.stages if known else ()), stage.id))
    return list(found.values())


class PatchChecker:
    """Applies patch sets to mirrored sources; answers are remembered by the source and patches' content."""

    def __init__(self, upstreams: Upstreams | None = None, cache: Path | None = None) -> None:
        self.upstreams = upstreams or Upstreams()
        self.cache = JsonCache("patch-checks", cache)

    def check(self, ps: PatchSet) -> PatchCheck:
        names = [n for n, _ in ps.patches]
        result = PatchCheck(ps.service, ps.version, names, "not-checked", stages=list(ps.stages))
        url = next((u for u, up in UPSTREAMS.items() if canonical(up.project) == canonical(ps.service)), "")
        if not url:
            result.output = f"no repository of {ps.service} is declared in runner.verify.upstream.UPSTREAMS"
            return result
        if not ps.version:
            result.output = f"the stage does not say which {ps.service} it patches (no build argument " \
                            f"{ps.service.upper().replace('-', '_')}_VERSION)"
            return result
        ref = UPSTREAMS[url].tag.format(version=ps.version)
        obtained = self.upstreams.obtain(url, ref)
        if obtained.status != "mirrored":
            result.output = obtained.reason
            return result
        key = hashlib.sha256(json.dumps([url, ref, obtained.sdist, ps.installed, ps.patches]).encode()).hexdigest()[:32]
        if known := self._read(key):
            known.stages = list(ps.stages)
            return known
        files = self.upstreams.files(url, ref)
        where = _package_parent(files, ps.installed) if ps.installed else ""
        if where is None:
            result.output = f"the source of {ps.service} {ps.version} holds no package {ps.installed}"
            return result
        # only the files the patches name are written out: a release's tree is thousands of files
        named = {f"{where}{p}" for _, text in ps.patches for p in _PATCHED.findall(text)}
        with tempfile.TemporaryDirectory(prefix="runner-patch-") as tmp:
            tree = self.upstreams.tree(url, ref, Path(tmp) / "src", sorted(named & set(files)))
            (tree / where).mkdir(parents=True, exist_ok=True)
            result.status = "applies"
            for name, text in ps.patches:
                # the build's own command (runner.compose.kit.add_patches), on a copy of the real source
                done = subprocess.run(["patch", "-p1", "--forward", "--batch"], input=text, cwd=tree / where,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    result.status, result.failed = "fails", name
                    result.output = (done.stdout + done.stderr).strip()
                    break
        self._write(key, result)
        return result

    def _read(self, key: str) -> PatchCheck | None:
        try:
            return PatchCheck(**{**(self.cache.get_dict(key) or {}), "cached": True})
        except TypeError:
            return None  # a file that does not read back is ignored and rewritten

    def _write(self, key: str, result: PatchCheck) -> None:
        self.cache.put(key, result.to_json())


def _package_parent(files: list[str], dist: str) -> str | None:
    """The folder of a source tree ("" or "python/") that holds the distribution's import package, as
    site-packages would; None when there is none."""
    module = dist.replace("-", "_")
    found = [f[: -len(f"{module}/__init__.py")] for f in files if f.endswith(f"{module}/__init__.py")
             and f.count("/") <= 2 and (f == f"{module}/__init__.py" or f.endswith(f"/{module}/__init__.py"))]
    return min(found, key=len) if found else None


def check_patches(stages: Iterable[Stage], checker: PatchChecker | None = None,
                  pack: Path | None = None) -> list[PatchCheck]:
    """Every patch set of the stages, applied to its real source (each distinct set once); with the
    pack folder, a failing patch is named by its file there."""
    checker = checker or PatchChecker()
    checks = []
    for ps in patch_sets(stages):
        result = checker.check(ps)
        if result.status == "fails" and pack is not None:
            text = dict(ps.patches)[result.failed]
            found = [p for p in sorted(pack.rglob(result.failed)) if p.is_file() and p.read_text() == text]
            result.failed = str(found[0]) if found else result.failed
        checks.append(result)
    return checks
