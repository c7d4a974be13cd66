"""Targets: the matrix expanded into one record per multi-arch image, and selections of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from runner.model.errors import ErrorList, UserError, Where
from runner.model.naming import format_tag

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
                                   version=full, variant=variant, python=python, service=service)
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


@dataclass(frozen=True)
class Selection:
    """Filters over targets; empty fields select everything. Versions match exactly or by dotted
    prefix (backend_version "12" matches 12.8 and 12.9; service_version "0.5" matches 0.5.8)."""

    backend: str = ""
    backend_version: str = ""
    variant: str = ""
    service: str = ""
    service_version: str = ""
    platform: str = ""
    include_deprecated: bool = True

    def matches(self, t: Target) -> bool:
        return (
            (not self.backend or t.backend == self.backend)
            and (not self.backend_version or version_matches(t.backend_version, self.backend_version)
                 or version_matches(t.original_backend_version, self.backend_version))
            and (not self.variant or t.variant == self.variant)
            and (not self.service or t.service == self.service)
            and (not self.service_version or version_matches(t.service_version, self.service_version))
            and (not self.platform or self.platform in t.platforms)
            and (self.include_deprecated or not t.deprecated)
        )

    def apply(self, targets: Iterable[Target]) -> list[Target]:
        """The targets this selection keeps, narrowed to the selected platform when one is set."""
        from dataclasses import replace

        kept = [t for t in targets if self.matches(t)]
        if self.platform:
            kept = [replace(t, platforms=(self.platform,)) for t in kept]
        return kept

    def check_names(self, targets: Sequence[Target]) -> None:
        """Refuse filter values that no target could ever match (a misspelt backend, say)."""
        from runner.model.errors import closest

        for name, values in (("backend", {t.backend for t in targets}), ("service", {t.service for t in targets}),
                             ("variant", {t.variant for t in targets} - {""})):
            value = getattr(self, name)
            if value and value not in values:
                raise UserError(f"unknown {name}", value=value, allowed=sorted(values), hint=closest(value, values))
        if self.platform and self.platform not in {p for t in targets for p in t.platforms}:
            raise UserError("unknown platform", value=self.platform, allowed=sorted({p for t in targets for p in t.platforms}))

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in vars(self).items() if v and k != "include_deprecated"]
        return " ".join(parts) or "everything"

    def to_json(self) -> str:
        """Compact JSON of the filters that are set: what a CI job carries to plan its own selection."""
        import json

        return json.dumps({k: v for k, v in vars(self).items() if v != getattr(Selection, k)}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Selection:
        """The selection `to_json` wrote ('' or {}: everything); anything else is a UserError."""
        import json

        allowed = {k: type(getattr(cls, k)) for k in cls.__dataclass_fields__}
        try:
            data = json.loads(text or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(k not in allowed or type(v) is not allowed[k] for k, v in data.items()):
            raise UserError("malformed selection", value=text[:300],
                            allowed="a JSON object of " + ", ".join(f"{k} ({t.__name__})" for k, t in allowed.items()))
        return cls(**data)


def version_matches(version: str, wanted: str) -> bool:
    """Exact match, or `wanted` is a whole-part prefix of `version` (0.5 matches 0.5.8, not 0.55)."""
    return version == wanted or version.startswith(wanted + ".")
