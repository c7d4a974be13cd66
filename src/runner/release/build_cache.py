"""Stages handed from one runner to the next through a registry: the build cache.

A stage other jobs build on (see runner.compose.jobs) is pushed as
`<registry>/<namespace>/<repository>-build-cache:<key>`, the key being the stage's content and the
digests of every base image under it (runner.compose.lookup). A build asks the registry which of the
stages it needs are there, takes the nearest ones, builds the rest and publishes the shared stages it
built. A CI job never builds another job's stage: when one it starts from is missing, that job
failed (or has not run) and this one stops, saying which. Either engine does the building; this module
only decides and names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from runner.compose.lookup import Lookup, cache_key, lookup, stages_under
from runner.compose.stages import Stage
from runner.model.errors import first_error
from runner.release.pipeline import BuildError

if TYPE_CHECKING:  # the registry client (httpx) is imported only by the runs that use a build cache
    from runner.release.registry import Registry

_ASKED_AT_ONCE = 8  # registry reads in flight while looking stages up


class InputMissing(BuildError):
    """A stage another job publishes is not in the build cache: that job failed or has not run."""


@dataclass
class BuildCache:
    """The build-cache repository of one registry, and what a build may take from it and give to it."""

    registry: Registry
    repository: str  # namespace/repository-build-cache
    shared: set[str] = field(default_factory=set)  # keys of the stages other jobs start from
    inputs: dict[str, str] = field(default_factory=dict)  # stage key -> the job that publishes it (a CI job's needs)
    read_only: bool = False  # a dry run: look stages up, publish nothing
    found: list[str] = field(default_factory=list)  # what this run took from the cache, for the report
    published: list[str] = field(default_factory=list)

    def ref(self, stage: Stage, digests: Mapping[Stage, str]) -> str:
        return f"{self.registry.host}/{self.repository}:{cache_key(stage, digests)}"

    async def lookup(self, target: Stage, digests: Mapping[Stage, str]) -> Lookup:
        """What a build of `target` takes from the cache and builds (asking the registry about every
        stage it may need at once); raises InputMissing when another job's stage is not there."""
        stages = stages_under(target)
        present: set[str] = set()
        limit = anyio.CapacityLimiter(_ASKED_AT_ONCE)

        async def ask(stage: Stage) -> None:
            async with limit:
                if await self.registry.digest(self.repository, cache_key(stage, digests)) is not None:
                    present.add(stage.key)

        # the first answer alone: it settles the registry's authorization the others then share
        await ask(stages[-1])
        try:
            async with anyio.create_task_group() as tg:
                for stage in stages[:-1]:
                    tg.start_soon(ask, stage)
        except BaseExceptionGroup as group:  # one registry fault, as itself
            raise first_error(group) from None
        found = lookup(target, lambda s: s.key in present, self.inputs)
        if found.missing:
            raise InputMissing("; ".join(
                f"input {s.kind} {s.name} {s.platform} failed in job {self.inputs[s.key][:16]}: it is not in the build "
                f"cache, so this job stops instead of building it (re-run job {self.inputs[s.key][:16]} first)"
                for s in found.missing))
        self.found += [f"{s.kind} {s.name} {s.platform}" for s in found.found]
        return found

    def substitutes(self, found: Lookup, digests: Mapping[Stage, str]) -> dict[str, str]:
        """Stage key -> the cached image a build starts from instead of building the stage."""
        return {s.key: self.ref(s, digests) for s in found.found}

    def to_publish(self, found: Lookup) -> list[Stage]:
        """The stages a build made and hands on (none in a dry run)."""
        return [] if self.read_only else found.to_publish(self.shared)
