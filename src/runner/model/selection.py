"""Selections: the one set of filters over targets and catalog records that the CLI, the Dagger module
and the catalog share.

Versions match exactly or by whole dotted parts (backend_version "12" keeps 12.8 and 12.9;
service_version "0.5" keeps 0.5.8, not 0.55); the `*_prefix` filters have gpustack-runner's
list_runners rule (the shorter of the two begins the other). `select` and `skip` are glob patterns
over the multi-arch tag, several separated by spaces, as cibuildwheel's build selector has them:
`select="cuda12.* rocm*" skip="*-dev"`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, NamedTuple

from runner.model.errors import UserError, closest

if TYPE_CHECKING:
    from runner.model.catalog import RunnerRecord
    from runner.model.targets import Target


def version_matches(version: str, wanted: str) -> bool:
    """Exact match, or `wanted` is a whole-part prefix of `version` (0.5 matches 0.5.8, not 0.55)."""
    return version == wanted or version.startswith(wanted + ".")


def prefix_matches(actual: str, expected: str) -> bool:
    """gpustack-runner's prefix rule: the shorter of the two (by dotted parts, or by length when neither
    has a dot) must begin the other."""
    a_parts, e_parts = actual.split("."), expected.split(".")
    if len(a_parts) == len(e_parts) == 1:
        if len(actual) < len(expected):
            actual, expected = expected, actual
    elif len(a_parts) < len(e_parts):
        actual, expected = expected, actual
    return actual.startswith(expected)


class _Fields(NamedTuple):
    """What a selection reads of a target or of a catalog record."""

    backend: str
    backend_versions: tuple[str, str]  # the tag's and the original
    variant: str
    service: str
    service_version: str
    platforms: tuple[str, ...]
    deprecated: bool
    tag: str


def _patterns(text: str) -> list[str]:
    return text.split()


@dataclass(frozen=True)
class Selection:
    """Filters over targets and catalog records; empty fields select everything (module docstring)."""

    backend: str = ""
    backend_version: str = ""
    variant: str = ""
    service: str = ""
    service_version: str = ""
    platform: str = ""
    include_deprecated: bool = True
    backend_version_prefix: str = ""
    service_version_prefix: str = ""
    select: str = ""  # glob patterns over tags, space-separated: keep a target any of them matches
    skip: str = ""  # glob patterns over tags, space-separated: drop a target any of them matches

    def _keeps(self, f: _Fields) -> bool:
        return (
            (not self.backend or f.backend == self.backend)
            and (not self.backend_version or any(version_matches(v, self.backend_version) for v in f.backend_versions))
            and (not self.backend_version_prefix or prefix_matches(f.backend_versions[0], self.backend_version_prefix))
            and (not self.variant or f.variant == self.variant)
            and (not self.service or f.service == self.service)
            and (not self.service_version or version_matches(f.service_version, self.service_version))
            and (not self.service_version_prefix or prefix_matches(f.service_version, self.service_version_prefix))
            and (not self.platform or self.platform in f.platforms)
            and (self.include_deprecated or not f.deprecated)
            and (not self.select or any(fnmatchcase(f.tag, p) for p in _patterns(self.select)))
            and not any(fnmatchcase(f.tag, p) for p in _patterns(self.skip))
        )

    def matches(self, t: Target) -> bool:
        return self._keeps(_Fields(t.backend, (t.backend_version, t.original_backend_version), t.variant, t.service,
                                   t.service_version, t.platforms, t.deprecated, t.tag))

    def matches_record(self, r: RunnerRecord) -> bool:
        """Whether a catalog record (one target on one platform) is selected; its tag is its image's."""
        return self._keeps(_Fields(r.backend, (r.backend_version, r.original_backend_version), r.backend_variant,
                                   r.service, r.service_version, (r.platform,), r.deprecated,
                                   r.docker_image.rsplit(":", 1)[-1]))

    def apply(self, targets: Iterable[Target]) -> list[Target]:
        """The targets this selection keeps, narrowed to the selected platform when one is set."""
        kept = [t for t in targets if self.matches(t)]
        if self.platform:
            kept = [replace(t, platforms=(self.platform,)) for t in kept]
        return kept

    def records(self, items: Iterable[RunnerRecord]) -> list[RunnerRecord]:
        """The catalog records this selection keeps, in their order."""
        return [r for r in items if self.matches_record(r)]

    def check_names(self, targets: Sequence[Target]) -> None:
        """Refuse filter values that no target could ever match (a misspelt backend, a tag pattern)."""
        for name, values in (("backend", {t.backend for t in targets}), ("service", {t.service for t in targets}),
                             ("variant", {t.variant for t in targets} - {""})):
            value = getattr(self, name)
            if value and value not in values:
                raise UserError(f"unknown {name}", value=value, allowed=sorted(values), hint=closest(value, values))
        if self.platform and self.platform not in {p for t in targets for p in t.platforms}:
            raise UserError("unknown platform", value=self.platform, allowed=sorted({p for t in targets for p in t.platforms}))
        tags = [t.tag for t in targets]
        for name in ("select", "skip"):
            for pattern in _patterns(getattr(self, name)):
                if not any(fnmatchcase(tag, pattern) for tag in tags):
                    raise UserError(f"the {name} pattern matches no target's tag", value=pattern,
                                    allowed="glob patterns over tags (* ? [...]), e.g. 'cuda12.*-vllm0.14*'",
                                    hint=closest(pattern, tags))

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in vars(self).items() if v and k != "include_deprecated"]
        return " ".join(parts) or "everything"

    def to_json(self) -> str:
        """Compact JSON of the filters that are set: what a CI job carries to plan its own selection."""
        return json.dumps({k: v for k, v in vars(self).items() if v != getattr(Selection, k)}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Selection:
        """The selection `to_json` wrote ('' or {}: everything); anything else is a UserError."""
        allowed = {k: type(getattr(cls, k)) for k in cls.__dataclass_fields__}
        try:
            data = json.loads(text or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(k not in allowed or type(v) is not allowed[k] for k, v in data.items()):
            raise UserError("malformed selection", value=text[:300],
                            allowed="a JSON object of " + ", ".join(f"{k} ({t.__name__})" for k, t in allowed.items()))
        return cls(**data)


# the filter fields of a selection, by name (its CLI options are the same names with dashes): every field
# but include_deprecated, which widens a selection instead of narrowing it
FILTERS = tuple(f.name for f in fields(Selection) if f.name != "include_deprecated")
