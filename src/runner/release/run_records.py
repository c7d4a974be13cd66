"""What one release run built and tested, kept in the registry beside its images, so that the run's
later steps act on its own results and nothing else.

A CI job that tested a target on a platform records the digest it pushed (or why the leg failed); the
run's merge writes a -dev index only from digests its own run recorded and records that index;
promote points a final tag only at an index its run recorded; the release report reads them all back.
Whatever exists under the tag names (an earlier release's single-arch image, another run's index)
plays no part.

Records are tiny OCI manifests in `<namespace>/<repository>-runs` on the release registry, tagged
`<run>.<tag>-<platform>` and `<run>.<tag>-dev`, the record in an annotation. They are worth keeping
until a run is promoted and safe to expire after (a retention policy on that repository).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from runner.model.errors import Failed, UserError

if TYPE_CHECKING:
    from runner.release.registry import Registry

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_ANNOTATION = "io.gpustack.runner.record"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# every record shares one empty image config: the registry keeps only what the manifest references
_CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                      "config": {}}, sort_keys=True).encode()


def check_run(run: str) -> str:
    """A run ID as CI gives it (GitHub's run_id, GitLab's pipeline ID), or a UserError."""
    if not RUN_ID.match(run or ""):
        raise UserError("malformed run ID", value=run, allowed="1 to 40 letters, digits and . _ - (e.g. GitHub's "
                        "github.run_id, GitLab's CI_PIPELINE_ID)")
    return run


class _Record(BaseModel):
    # a record is read back exactly as written: no coercion ("yes" is no bool), no unknown field
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class LegRecord(_Record):
    """One target on one platform in one run: the digest its job pushed after every check passed, or
    why it failed."""

    tag: str
    platform: str
    passed: bool
    digest: str = ""
    size: int = 0
    build_seconds: float = 0.0
    smoke_seconds: float = 0.0
    reason: str = ""
    job: str = ""


class IndexRecord(_Record):
    """A -dev index a run's merge wrote, and the single-arch digests it holds."""

    tag: str
    digest: str
    platforms: dict[str, str] = {}


class RunRecords:
    """The records of one run, read and written through the release registry's API."""

    def __init__(self, registry: Registry, path: str, run: str) -> None:
        self.registry, self.path, self.run = registry, path, check_run(run)
        self._config = ""

    def _tag(self, tag: str, part: str) -> str:
        name = f"{self.run}.{tag}-{part.replace('/', '-')}"
        if len(name) > 128:  # the distribution spec's limit on tags
            raise UserError("run ID too long for this tag", value=self.run, hint="use a shorter run ID")
        return name

    async def put_leg(self, record: LegRecord) -> None:
        await self._put(self._tag(record.tag, record.platform), "leg", record.model_dump())

    async def put_index(self, record: IndexRecord) -> None:
        await self._put(self._tag(record.tag, "dev"), "index", record.model_dump())

    async def leg(self, tag: str, platform: str) -> LegRecord | None:
        data = await self._get(self._tag(tag, platform), "leg")
        return None if data is None else _typed(LegRecord, data, tag)

    async def index(self, tag: str) -> IndexRecord | None:
        data = await self._get(self._tag(tag, "dev"), "index")
        return None if data is None else _typed(IndexRecord, data, tag)

    async def _put(self, name: str, kind: str, data: dict) -> None:
        if not self._config:
            self._config = await self.registry.upload_blob(self.path, _CONFIG)
        body = json.dumps({"schemaVersion": 2, "mediaType": _MANIFEST, "layers": [],
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": self._config, "size": len(_CONFIG)},
                           "annotations": {_ANNOTATION: json.dumps({"run": self.run, "kind": kind, **data},
                                                                   sort_keys=True)}}, sort_keys=True).encode()
        await self.registry.put_manifest(self.path, name, body, _MANIFEST)

    async def _get(self, name: str, kind: str) -> dict | None:
        found = await self.registry.manifest(self.path, name)
        if found is None:
            return None
        try:
            data = json.loads(json.loads(found.body)["annotations"][_ANNOTATION])
        except (ValueError, KeyError, TypeError):
            raise Failed(f"{self.path}:{name} is not a run record: remove it, or run with another run ID") from None
        if not isinstance(data, dict) or data.pop("run", None) != self.run or data.pop("kind", None) != kind:
            raise Failed(f"{self.path}:{name} does not record run {self.run}: remove it, or run with another run ID")
        return data


def _typed(cls: type[_Record], data: dict, tag: str):
    """A record of the expected shape, or Failed: a record that lies is never acted on."""
    try:
        record = cls.model_validate(data)
    except ValidationError as e:
        raise Failed(f"the run record of {tag} is malformed: {e.errors()[0]['msg']}") from None
    if record.tag != tag:
        raise Failed(f"the run record of {tag} names {record.tag}")
    return record
