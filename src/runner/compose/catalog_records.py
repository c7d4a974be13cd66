"""Catalog records with what each image carries: the `dependencies` of a record are the Python
components its recipe declares for that platform (runner.compose.components), under the names
gpustack-runner's catalog uses (runner.model.catalog.DEPENDENCY_NAMES), at the declared version. A
component whose version the recipe leaves to the resolver (ray on CUDA) is not stated."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from runner.model.catalog import DEPENDENCY_NAMES, RunnerRecord, records
from runner.model.targets import Target


def dependencies(project, t: Target, platform: str) -> dict[str, str]:
    """Package -> version for the whitelisted packages the target's image declares on a platform."""
    from runner.compose.plan import compose

    leaf = compose(project.recipes[t.backend], t, platform)
    found = {}
    for stage in leaf.chain():
        for c in stage.components:
            name = c.dist or c.name
            if name in DEPENDENCY_NAMES and c.version:
                found[name] = c.version
    return dict(sorted(found.items()))


def catalog_records(project, targets: Iterable[Target], image_of: Callable[[str], str]) -> list[RunnerRecord]:
    """The catalog records of targets, dependencies filled from their recipes."""
    return records(targets, image_of, lambda t, platform: dependencies(project, t, platform))
