"""Which stages a build takes from the build cache and which it builds: one walk, run by every CI
job against the registry and by the plan's figures against a simulated cache.

A stage's build-cache tag is its content key combined with the digests of every base image under it:
its own chain's and those of the stages it mounts or copies from (a CUDA 12.6 image mounting a vLLM
wheel built on the 12.8.1 chain depends on both). So a refreshed base changes every key above it,
and a stage is found under the same tag whichever job looks it up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from runner.compose.stages import Stage, StageKind, dependencies_first


@lru_cache(maxsize=16384)
def base_stages(stage: Stage) -> tuple[Stage, ...]:
    """The base stages (FROM images) under a stage, each once, in a stable order."""
    if stage.kind == StageKind.BASE:
        return (stage,)
    found = {b.key: b for d in stage.dependencies() for b in base_stages(d)}
    return tuple(sorted(found.values(), key=lambda b: (b.image, b.platform)))


def cache_key(stage: Stage, digests: Mapping[Stage, str]) -> str:
    """The build-cache tag of a stage: its content and the digest of every base image under it."""
    bases = "\0".join(f"{b.image}@{digests[b]}" for b in base_stages(stage))
    return hashlib.sha256(f"{stage.key}\0{bases}".encode()).hexdigest()[:40]


def stages_under(target: Stage) -> list[Stage]:
    """Every stage a build of `target` may need (itself included), dependencies first, bases left out."""
    return [s for s in dependencies_first(target) if s.kind != StageKind.BASE]


@dataclass
class Lookup:
    """What a build of one stage takes from the cache, what it builds, and which inputs are missing."""

    target: Stage
    found: list[Stage] = field(default_factory=list)  # nearest cached stages; nothing below them is needed
    build: list[Stage] = field(default_factory=list)  # dependencies first
    missing: list[Stage] = field(default_factory=list)  # other jobs' stages the cache should hold and does not

    def to_publish(self, shared: Iterable[str]) -> list[Stage]:
        """What this build made and hands on: the shared stages, and the target (so that a re-run of
        its job on another runner builds nothing)."""
        keep = set(shared) | {self.target.key}
        return [s for s in self.build if s.key in keep]


def lookup(target: Stage, present: Callable[[Stage], bool], inputs: Iterable[str] = ()) -> Lookup:
    """Walk from `target` down: a stage the cache holds is taken (and nothing below it looked at),
    any other is built after its dependencies. A stage named in `inputs` (another job's root) is
    never built here: when the cache lacks it, it is recorded as missing."""
    inputs = set(inputs) - {target.key}
    result = Lookup(target)
    taken: dict[str, list[Stage]] = {}  # stage key -> the list it goes to; asked of the cache once

    def place(s: Stage) -> bool:
        """Whether the walk goes on below s: only for a stage built here."""
        if s.kind == StageKind.BASE:
            return False
        taken[s.key] = result.found if present(s) else result.missing if s.key in inputs else result.build
        return taken[s.key] is result.build

    for s in dependencies_first(target, place):
        if s.key in taken:
            taken[s.key].append(s)
    return result
