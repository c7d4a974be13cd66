"""The consumer catalog: one record per target and platform, in the shape of gpustack-runner's
packaged catalog, and `list_runners(...)` to pick images by backend, service and versions.

The packaged catalog (runner/catalog.json) is generated from matrix.yaml (`runner catalog --write`);
publish, promote, discard and prune keep a catalog file in step with the registry.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter

PACKAGED = Path(__file__).resolve().parent.parent / "catalog.json"  # packaged with runner, beside its __init__


class RunnerRecord(BaseModel):
    """One runner image on one platform."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str
    backend_version: str
    original_backend_version: str
    backend_variant: str
    service: str
    service_version: str
    platform: str
    docker_image: str
    deprecated: bool


_RECORDS = TypeAdapter(list[RunnerRecord])


def records(targets: Iterable, image_of) -> list[RunnerRecord]:
    """Catalog records for targets; image_of(tag) gives the multi-arch image reference."""
    return [
        RunnerRecord(
            backend=t.backend, backend_version=t.backend_version, original_backend_version=t.original_backend_version,
            backend_variant=t.variant, service=t.service, service_version=t.service_version,
            platform=platform, docker_image=image_of(t.tag), deprecated=t.deprecated,
        )
        for t in targets
        for platform in t.platforms
    ]


def load(path: Path = PACKAGED) -> list[RunnerRecord]:
    """Read a catalog file (a JSON list of records)."""
    from runner.model.errors import UserError

    try:
        return _RECORDS.validate_json(path.read_bytes())
    except FileNotFoundError:
        raise UserError("catalog file not found", value=str(path), hint="write one with `runner catalog --write PATH`") from None
    except ValueError as e:
        raise UserError(f"{path}: not a runner catalog: {str(e).splitlines()[0]}") from None


def dump(items: Sequence[RunnerRecord]) -> str:
    ordered = sorted(items, key=lambda r: (r.backend, r.docker_image, r.platform))
    return json.dumps([r.model_dump() for r in ordered], indent=2) + "\n"


def write(path: Path, items: Sequence[RunnerRecord]) -> None:
    """Replace a catalog file atomically: readers see the old or the new catalog, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dump(items))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prefix(value: str, wanted: str | None) -> bool:
    return not wanted or value == wanted or value.startswith(wanted + ".")


def filter_records(
    items: Iterable[RunnerRecord],
    backend: str | None = None,
    backend_version: str | None = None,
    backend_variant: str | None = None,
    service: str | None = None,
    service_version: str | None = None,
    platform: str | None = None,
    with_deprecated: bool = False,
) -> list[RunnerRecord]:
    """Records matching every given filter; versions match exactly or by whole dotted parts."""
    return [
        r for r in items
        if (not backend or r.backend == backend)
        and (_prefix(r.backend_version, backend_version) or _prefix(r.original_backend_version, backend_version))
        and (backend_variant is None or r.backend_variant == backend_variant)
        and (not service or r.service == service)
        and _prefix(r.service_version, service_version)
        and (not platform or r.platform == platform)
        and (with_deprecated or not r.deprecated)
    ]


def list_runners(
    backend: str | None = None,
    backend_version: str | None = None,
    backend_variant: str | None = None,
    service: str | None = None,
    service_version: str | None = None,
    platform: str | None = None,
    with_deprecated: bool = False,
    catalog: Path | None = None,
) -> list[RunnerRecord]:
    """Runner images matching the filters, from the packaged catalog (or the catalog file given).

    >>> list_runners(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14")
    """
    return filter_records(load(catalog or PACKAGED), backend, backend_version, backend_variant, service,
                          service_version, platform, with_deprecated)
