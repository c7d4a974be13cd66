"""`runner mirror`: copy final tags to another registry or namespace by digest, with the artifacts
that refer to them (SBOMs, signed provenance), so a user pulling from the mirror gets the very bytes
that were tested and can check them the same way. Everything under a tag is copied before the tag is
written (blobs, platform manifests, artifacts, then the index); a tag already at the source's digest
with its artifacts is left alone, so running it again copies nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.model.errors import Failed
from runner.release import referrers
from runner.release.registry import MANIFEST_TYPES

if TYPE_CHECKING:
    from runner.release.registry import Manifest, Registry

SMALL_BLOB = 32 << 20  # read whole (and retried); larger blobs stream through once


@dataclass
class Copied:
    tag: str
    digest: str = ""
    changed: bool = False
    blobs: int = 0  # blobs copied (mounted or uploaded)
    artifacts: int = 0
    skipped: str = ""


@dataclass
class Copier:
    """Copies from one repository to another, possibly on another registry."""

    source: Registry
    source_repo: str
    dest: Registry
    dest_repo: str
    done: set[str] = field(default_factory=set)  # digests already in place this run

    async def tag(self, tag: str) -> Copied:
        out = Copied(tag)
        top = await self.source.manifest(self.source_repo, tag)
        if top is None:
            out.skipped = f"{self.source.host}/{self.source_repo}:{tag} does not exist"
            return out
        out.digest = top.digest
        before = (out.blobs, out.artifacts)
        await self.manifest(top, out)
        if await self.dest.digest(self.dest_repo, tag) != top.digest:
            landed = await self.dest.put_manifest(self.dest_repo, tag, top.body, top.media_type)
            if landed != top.digest:
                raise Failed(f"the copy of {tag} landed as {landed}, not {top.digest}")
            out.changed = True
        out.changed = out.changed or (out.blobs, out.artifacts) != before
        return out

    async def manifest(self, m: Manifest, out: Copied) -> None:
        """A manifest by digest with everything under it and every artifact referring to it."""
        if m.digest in self.done:
            return
        body = json.loads(m.body)
        if m.is_index:
            for entry in body.get("manifests", []):
                child = await self.source.manifest(self.source_repo, entry["digest"])
                if child is None:
                    raise Failed(f"{self.source_repo}@{m.digest} names {entry['digest']}, which the source lacks")
                await self.manifest(child, out)
        else:
            for blob in [body.get("config") or {}, *(body.get("layers") or [])]:
                if blob.get("digest"):
                    out.blobs += await self.blob(blob["digest"], int(blob.get("size", 0)))
        if await self.dest.manifest(self.dest_repo, m.digest) is None:
            await self.dest.put_manifest(self.dest_repo, m.digest, m.body, m.media_type or MANIFEST_TYPES[2])
        self.done.add(m.digest)
        await self.artifacts(m, out)

    async def artifacts(self, subject: Manifest, out: Copied) -> None:
        for found in await referrers.read(self.source, self.source_repo, subject.digest):
            art = await self.source.manifest(self.source_repo, found.digest)
            if art is None or found.digest in self.done:
                continue
            for blob in [json.loads(art.body).get("config") or {}, *(json.loads(art.body).get("layers") or [])]:
                out.blobs += await self.blob(blob["digest"], int(blob.get("size", 0)))
            listed = {d["digest"] for d in await referrers.listed(self.dest, self.dest_repo, subject.digest)}
            if found.digest not in listed:
                await referrers.put_artifact(self.dest, self.dest_repo, subject, art.body)
                out.artifacts += 1
            self.done.add(found.digest)

    async def blob(self, digest: str, size: int) -> int:
        """Copy one blob unless the destination has it; 1 when bytes (or a mount) were needed."""
        if await self.dest.has_blob(self.dest_repo, digest):
            return 0
        if self.dest.host == self.source.host and await self.dest.mount_blob(self.dest_repo, digest, self.source_repo):
            return 1
        if size <= SMALL_BLOB:
            data = await self.source.blob(self.source_repo, digest)
            if data is None:
                raise Failed(f"{self.source.host}/{self.source_repo} lacks the blob {digest}")
            await self.dest.upload_blob(self.dest_repo, data)
            return 1
        async with self.source.blob_stream(self.source_repo, digest) as chunks:
            await self.dest.put_blob_stream(self.dest_repo, digest, chunks)
        return 1


async def mirror(copier: Copier, tags: Sequence[str]) -> list[Copied]:
    return [await copier.tag(t) for t in tags]
