"""Stages handed from one runner to the next through a registry: the build cache.

A stage other jobs build on (see runner.compose.jobs) is pushed as
`<registry>/<namespace>/<repository>-build-cache:<key>`, where the key is the stage's content key
combined with the digest of the base image it starts from (a refreshed base changes every key below
it). A build looks up, for each stage it needs, the closest ones already there and starts from them
instead of building them; it publishes the shared stages it did build. Either engine does the
building; this module only decides and names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.compose.stages import Stage

if TYPE_CHECKING:  # the registry client (httpx) is imported only by the runs that use a build cache
    from runner.release.registry import Registry


def cache_key(stage: Stage, base_digest: str) -> str:
    """The build-cache tag of a stage: its content and the digest of the base image under it."""
    return hashlib.sha256(f"{stage.key}\0{base_digest}".encode()).hexdigest()[:40]


@dataclass
class BuildCache:
    """The build-cache repository of one registry, and the stages worth publishing there."""

    registry: Registry
    repository: str  # namespace/repository-build-cache
    shared: set[str] = field(default_factory=set)  # keys of the stages other jobs start from
    found: list[str] = field(default_factory=list)  # what this run took from the cache, for the report
    published: list[str] = field(default_factory=list)

    def ref(self, stage: Stage, base_digest: str) -> str:
        return f"{self.registry.host}/{self.repository}:{cache_key(stage, base_digest)}"

    async def has(self, stage: Stage, base_digest: str) -> bool:
        return await self.registry.digest(self.repository, cache_key(stage, base_digest)) is not None

    async def substitutes(self, target: Stage, base_digest: str) -> dict[str, str]:
        """Stage key -> cached image for the stages `target` needs that are already in the cache, the
        target itself included, nearest first: a cached stage's own dependencies are not looked up
        (nothing below it is built)."""
        found: dict[str, str] = {}
        seen: set[str] = set()

        async def visit(stage: Stage) -> None:
            if stage.key in seen or stage.kind == "base":
                return
            seen.add(stage.key)
            if await self.has(stage, base_digest):
                found[stage.key] = self.ref(stage, base_digest)
                self.found.append(f"{stage.kind} {stage.name} {stage.platform}")
                return
            for dep in stage.dependencies():
                await visit(dep)

        await visit(target)
        return found

    def to_publish(self, target: Stage, substitutes: dict[str, str]) -> list[Stage]:
        """What a build of `target` made itself (did not take from the cache) and hands on: the shared
        stages, and the target, so that a re-run of its job on another runner rebuilds nothing."""
        out: list[Stage] = []
        seen: set[str] = set()

        def visit(stage: Stage) -> None:
            if stage.key in seen or stage.kind == "base" or stage.key in substitutes:
                return
            seen.add(stage.key)
            for dep in stage.dependencies():
                visit(dep)
            if stage.key in self.shared or stage is target:
                out.append(stage)

        visit(target)
        return out

