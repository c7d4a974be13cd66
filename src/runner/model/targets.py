"""Targets: the matrix expanded into one record per multi-arch image (runner.model.selection selects them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from runner.model.errors import ErrorList, UserError, Where
from runner.model.naming import format_tag
from runner.model.selection import Selection, version_matches  # noqa: F401  (callers have always found them here)

if TYPE_CHECKING:
    from runner.model.matrix import Matrix


def short_version(version: str) -> str:
    """The first two dotted parts of a version: 12.8.1 -> 12.8, 8.3.rc2 -> 8.3, 25.04.2 -> 25.04."""
    return ".".join(version.split(".")[:2])


@dataclass(frozen=True, slots=True)
class Target:
    """One multi-arch image: a service version built on one backend release, for some platforms."""

    backend: str
    backend_version: str  # major.minor, as in tags
    original_backend_version: str  # the full version the image builds on
    variant: str  # "" when the backend has none
    service: str
    service_version: str
    status: str
    platforms: tuple[str, ...]
    archs: tuple[str, ...]
    python: str
    base_image: str  # fully rendered, with @digest when pinned
    where: Where | None = field(default=None, compare=False, hash=False)
    tag: str = field(init=False, compare=False, hash=False)  # the multi-arch tag, e.g. cann8.5-a3-vllm0.14.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", format_tag(self))

    @property
    def deprecated(self) -> bool:
        return self.status == "deprecated"


def _render(template: str, **values: str) -> str:
    return template.format(**values)


def expand(matrix: Matrix, where_of=None) -> list[Target]:
    """Every target of the matrix, in matrix order. Two entries that name the same tag are an error
    (pointing at the second). `where_of(path)` maps a matrix path to a source position."""
    targets: list[Target] = []
    seen: dict[str, Target] = {}
    errors: list[UserError] = []
    for backend_name, backend in matrix.backends.items():
        for i, rel in enumerate(backend.releases):
            python = rel.python or backend.python
            for service, versions in rel.services.items():
                for j, sv in enumerate(versions):
                    full = sv.backend_version or rel.version
                    variant = rel.variant or ""
                    base = _render(sv.base_image or rel.base_image or backend.base_image,
                                   version=full, variant=variant, python=python, service=service,
                                   service_version=sv.version)
                    if rel.base_digest and full == rel.version:
                        base = f"{base}@{rel.base_digest}"
                    path = ("backends", backend_name, "releases", i, "services", service, j)
                    t = Target(
                        backend=backend_name,
                        backend_version=short_version(rel.version),
                        original_backend_version=full,
                        variant=variant,
                        service=service,
                        service_version=sv.version,
                        status=sv.status,
                        platforms=tuple(sv.platforms or rel.platforms or backend.platforms),
                        archs=tuple(sv.archs if sv.archs is not None else rel.archs),
                        python=python,
                        base_image=base,
                        where=where_of(path) if where_of else None,
                    )
                    if (first := seen.get(t.tag)) is not None:
                        errors.append(UserError("duplicate target", where=t.where, value=t.tag,
                                                hint=f"already defined at {first.where}" if first.where else None))
                        continue
                    seen[t.tag] = t
                    targets.append(t)
    if errors:
        raise ErrorList(errors)
    return targets

