"""Components: what a stage puts into an image, with its version and how to see that it is there
(a Python distribution and the version it must report, modules that must import without a device,
files that must exist, native libraries whose dependencies must all resolve). Recipes declare them
as they install them; `runner components` lists them per target next to what a recipe leaves out on
purpose; every image's smoke checks look for each one (runner.verify.probes.components)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Libraries only a host with the accelerator has: a native part may name them and still be whole.
DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-ml.so", "libnvidia-", "libamdhip64.so", "libhsa-runtime64.so",
                    "libascend", "libhccl", "libdrvdsmi", "libmusa", "libmcc", "libixthunk", "libdcmi")


@dataclass(frozen=True)
class Component:
    """One piece of software in an image."""

    name: str  # as the component table names it, e.g. "flashinfer" or "HPC-X"
    version: str
    dist: str = ""  # Python distribution whose version must start with `version`
    imports: tuple[str, ...] = ()  # modules that import without an accelerator
    paths: tuple[str, ...] = ()  # files or folders that must exist (globs allowed)
    libs: tuple[str, ...] = ()  # native libraries (globs) whose dependencies must resolve
    note: str = ""  # why this version, when it is not the obvious one

    def check(self) -> dict:
        """What the components probe is told to look for."""
        return {"name": self.name, "version": self.version, "dist": self.dist, "imports": list(self.imports),
                "paths": list(self.paths), "libs": list(self.libs)}


def python(name: str, version: str, dist: str | None = None, imports: Iterable[str] = (), libs: Iterable[str] = (),
           note: str = "") -> Component:
    """A Python package component. Its distribution is its name unless told otherwise; dist="" checks
    no distribution version (a package built from a commit reports its own version)."""
    return Component(name, version, name if dist is None else dist, tuple(imports), (), tuple(libs), note)


def native(name: str, version: str, paths: Iterable[str] = (), libs: Iterable[str] = (), note: str = "") -> Component:
    """A native component: files that must exist and libraries that must link."""
    return Component(name, version, "", (), tuple(paths), tuple(libs), note)


def effective(components: Iterable[Component]) -> list[Component]:
    """What an image ends up with: a component declared again by a later stage (SGLang's FlashInfer over
    its vLLM image's) replaces the earlier declaration, keeping its place in the list."""
    found: dict[str, Component] = {}
    for c in components:
        found[c.name] = c
    return list(found.values())


@dataclass(frozen=True)
class LeftOut:
    """A component the released images have and this recipe leaves out on purpose."""

    name: str
    reason: str
    services: tuple[str, ...] = ()  # empty: every service of the backend
