"""Catalog records with what each image carries: the `dependencies` of a record are the Python
components its recipe declares for that platform (runner.compose.components), under the names
gpustack-runner's catalog uses (runner.model.catalog.DEPENDENCY_NAMES), at the declared version. A
component whose version the recipe leaves to the resolver (ray on CUDA) or bounds by a range (ray on
CANN) is not stated: a record's dependency is one version the image holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from packaging.version import InvalidVersion, Version

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
            if name in DEPENDENCY_NAMES and _exact(c.version):
                found[name] = c.version
    return dict(sorted(found.items()))


def _exact(version: str | None) -> bool:
    """Whether a declared version is one version (a commit for git-built components counts)."""
    if not version:
        return False
    try:
        Version(version)
    except InvalidVersion:
        return not any(ch in version for ch in "<>=!~,*")
    return True


def catalog_records(project, targets: Iterable[Target], image_of: Callable[[str], str]) -> list[RunnerRecord]:
    """The catalog records of targets, dependencies filled from their recipes."""
    return records(targets, image_of, lambda t, platform: dependencies(project, t, platform))
