"""The consumer catalog: one record per target and platform, in the shape of gpustack-runner's
packaged catalog (runner.model.catalog_query has gpustack-runner's API over it: list_runners and the
grouped views).

The packaged catalog (runner/catalog.json) is generated from matrix.yaml (`runner catalog --write`);
publish, promote, discard and prune keep a catalog file in step with the registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter

PACKAGED = Path(__file__).resolve().parent.parent / "catalog.json"  # packaged with runner, beside its __init__

# The packages a record's `dependencies` names, as gpustack-runner's catalog names them (PyPI
# distributions); GPUStack picks images by them, e.g. a cache service by its `lmcache` version.
DEPENDENCY_NAMES = frozenset({
    "diffusers", "flash-attn", "flashinfer-python", "lmcache", "lmcache-ascend", "mooncake-transfer-engine", "ray",
    "runai-model-streamer", "sgl-kernel-npu", "sglang", "sglang-kernel", "sglang-router", "torch", "torch-npu",
    "transformers", "vllm", "vllm-ascend", "vllm-omni", "vllm-router",
})


class RunnerRecord(BaseModel):
    """One runner image on one platform, field for field gpustack-runner's `Runner`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # "deprecated": "yes" is not a boolean

    backend: str
    backend_version: str
    original_backend_version: str
    backend_variant: str
    service: str
    service_version: str
    platform: str
    docker_image: str
    deprecated: bool = False
    # package -> version the image carries (see DEPENDENCY_NAMES); None: never stated
    dependencies: dict[str, str] | None = None

    def as_json(self) -> dict:
        """The record as gpustack-runner writes it (no `dependencies` key when none is stated)."""
        return self.model_dump(exclude_none=True)


_RECORDS = TypeAdapter(list[RunnerRecord])


def records(targets: Iterable, image_of, dependencies_of=None) -> list[RunnerRecord]:
    """Catalog records for targets; image_of(tag) gives the multi-arch image reference,
    dependencies_of(target, platform) what the image carries (runner.compose.catalog_records)."""
    return [
        RunnerRecord(
            backend=t.backend, backend_version=t.backend_version, original_backend_version=t.original_backend_version,
            backend_variant=t.variant, service=t.service, service_version=t.service_version,
            platform=platform, docker_image=image_of(t.tag), deprecated=t.deprecated,
            dependencies=dependencies_of(t, platform) if dependencies_of else None,
        )
        for t in targets
        for platform in t.platforms
    ]


def load(path: Path = PACKAGED) -> list[RunnerRecord]:
    """Read a catalog file (a JSON list of records); anything else is a UserError naming the file."""
    from runner.model.files import read_validated

    return read_validated(path, "catalog file", _RECORDS.validate_json, "runner catalog",
                          "a catalog is the JSON list `runner catalog --write PATH` writes")


def dump(items: Sequence[RunnerRecord]) -> str:
    ordered = sorted(items, key=lambda r: (r.backend, r.docker_image, r.platform))
    return json.dumps([r.as_json() for r in ordered], indent=2) + "\n"


def write(path: Path, items: Sequence[RunnerRecord]) -> None:
    """Replace a catalog file atomically (mode kept; a link or device at the path is refused)."""
    from runner.model.files import write_atomic

    write_atomic(path, dump(items), "catalog file")


class CatalogFile:
    """A catalog file kept in step with a registry (runner.release.catalog_sync locks, journals and
    rewrites it); `notify` hears what is worth saying while that happens (a wait for the lock)."""

    def __init__(self, path: Path, notify: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.notify = notify

    def check(self) -> list[RunnerRecord]:
        """Refuse an unusable catalog up front: unreadable, not a catalog, or not replaceable."""
        from runner.model.files import check_writable

        check_writable(self.path, "catalog file")
        return load(self.path) if self.path.exists() else []
