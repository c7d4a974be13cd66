"""The consumer API over a catalog, as gpustack-runner has it: `list_runners(**filters)` with its filter
semantics (exact values; `backend_version_prefix` and `service_version_prefix`; deprecated records
included unless `with_deprecated=False`; `dependencies` as `(name, PEP 440 specifier)` pairs), and the
views grouped by backend and by service that GPUStack builds its choices from. Records are
runner.model.catalog.RunnerRecord; the grouped views are plain dicts in gpustack-runner's shape."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from runner.model.catalog import PACKAGED, RunnerRecord, load
from runner.model.errors import UserError
from runner.model.selection import prefix_matches

FILTERS = ("backend", "backend_version", "backend_version_prefix", "backend_variant", "service", "service_version",
           "service_version_prefix", "platform")


def version_sort_key(version: str) -> tuple:
    """Newest last: PEP 440 versions by their order, anything else below them, part by part."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, [(0, int(x)) if x.isdigit() else (1, x) for x in version.split(".")])


def _conditions(dependencies: Sequence | None) -> list[tuple[str, SpecifierSet]]:
    out = []
    for condition in dependencies or ():
        if not isinstance(condition, (tuple, list)) or len(condition) != 2:
            raise UserError("a dependency condition is a (name, PEP 440 specifier) pair", value=condition)
        name, spec = condition
        try:
            out.append((name, SpecifierSet(spec or "", prereleases=True)))
        except InvalidSpecifier:
            raise UserError(f"not a version specifier for dependency {name!r}", value=spec) from None
    return out


def _carries(record: RunnerRecord, conditions: list[tuple[str, SpecifierSet]], with_unknown: bool) -> bool:
    if not conditions:
        return True
    if record.dependencies is None:  # never stated: kept only on request
        return with_unknown
    for name, spec in conditions:
        version = record.dependencies.get(name)
        if version is None:
            return False
        try:
            if spec and not spec.contains(version):
                return False
        except InvalidVersion:
            return False
    return True


def filter_runners(items: Iterable[RunnerRecord], with_deprecated: bool | None = True,
                   dependencies: Sequence | None = None, with_unknown_dependencies: bool | None = True,
                   **filters: str | None) -> list[RunnerRecord]:
    """The records matching every given filter, in catalog order (a filter given as None is no filter)."""
    if unknown := sorted(set(filters) - set(FILTERS)):
        raise UserError("unknown catalog filter", value=unknown[0], allowed=FILTERS)
    with_deprecated = True if with_deprecated is None else with_deprecated
    conditions = _conditions(dependencies)
    given = {k: v for k, v in filters.items() if v is not None}
    found = []
    for r in items:
        if not all(prefix_matches(getattr(r, k[:-7]), v) if k.endswith("_prefix") else getattr(r, k) == v
                   for k, v in given.items()):
            continue
        if not with_deprecated and r.deprecated:
            continue
        if _carries(r, conditions, True if with_unknown_dependencies is None else bool(with_unknown_dependencies)):
            found.append(r)
    return found


def _records(catalog: Path | str | None, data_path: Path | str | None) -> list[RunnerRecord]:
    return load(Path(catalog or data_path or PACKAGED))


def list_runners(catalog: Path | str | None = None, todict: bool = False, data_path: Path | str | None = None,
                 **kwargs) -> list:
    """Runner images matching the filters (see FILTERS), from the packaged catalog or the file given
    (`catalog`, or gpustack-runner's `data_path`); records, or with todict=True dicts as gpustack-runner
    returns them.

    >>> list_runners(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")
    """
    found = filter_runners(_records(catalog, data_path), **kwargs)
    return [r.as_json() for r in found] if todict else found


# A grouped view, level by level: the key a level's entries are told apart by, the record's value for
# it, where the next level goes, what else an entry carries, and whether newest comes first.
_BACKEND_LEVELS = (
    ("backend", lambda r: r.backend, "versions", lambda r: {}, False),
    ("version", lambda r: r.backend_version, "variants", lambda r: {"original_version": r.original_backend_version}, True),
    ("variant", lambda r: r.backend_variant, "services", lambda r: {}, False),
    ("service", lambda r: r.service, "versions", lambda r: {}, False),
    ("version", lambda r: r.service_version, "platforms", lambda r: {"deprecated": r.deprecated}, True),
)
_SERVICE_LEVELS = (
    ("service", lambda r: r.service, "versions", lambda r: {}, False),
    ("version", lambda r: r.service_version, "backends", lambda r: {}, True),
    ("backend", lambda r: r.backend, "versions", lambda r: {}, False),
    ("version", lambda r: r.backend_version, "variants", lambda r: {"original_version": r.original_backend_version}, True),
    ("variant", lambda r: r.backend_variant, "platforms", lambda r: {"deprecated": r.deprecated}, False),
)


def _grouped(records: Iterable[RunnerRecord], levels: tuple) -> list[dict]:
    out: list[dict] = []
    for r in records:
        entries = out
        for key, value_of, children, extra, _ in levels:
            entry = next((e for e in entries if e[key] == value_of(r)), None)
            if entry is None:
                entry = {key: value_of(r), **extra(r), children: []}
                entries.append(entry)
            entries = entry[children]
        entries.append({"platform": r.platform, "docker_image": r.docker_image})
    _sort(out, levels)
    return out


def _sort(entries: list[dict], levels: tuple) -> None:
    if not levels:
        entries.sort(key=lambda e: e["platform"])
        return
    key, _, children, _, newest_first = levels[0]
    entries.sort(key=(lambda e: version_sort_key(e[key])) if newest_first else (lambda e: e[key]), reverse=newest_first)
    for e in entries:
        _sort(e[children], levels[1:])


def build_backend_runners(records: Iterable[RunnerRecord]) -> list[dict]:
    """Backend -> version -> variant -> service -> service version -> platforms (gpustack-runner's
    BackendRunners as dicts)."""
    return _grouped(records, _BACKEND_LEVELS)


def build_service_runners(records: Iterable[RunnerRecord]) -> list[dict]:
    """Service -> service version -> backend -> version -> variant -> platforms (gpustack-runner's
    ServiceRunners as dicts)."""
    return _grouped(records, _SERVICE_LEVELS)


def list_backend_runners(catalog: Path | str | None = None, data_path: Path | str | None = None, **kwargs) -> list[dict]:
    """list_runners grouped by backend (takes the same filters)."""
    kwargs.pop("todict", None)
    return build_backend_runners(filter_runners(_records(catalog, data_path), **kwargs))


def list_service_runners(catalog: Path | str | None = None, data_path: Path | str | None = None, **kwargs) -> list[dict]:
    """list_runners grouped by service (takes the same filters)."""
    kwargs.pop("todict", None)
    return build_service_runners(filter_runners(_records(catalog, data_path), **kwargs))
