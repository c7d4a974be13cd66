"""OCI 1.1 referrers: artifacts (an SBOM, a signed provenance) that point at an image through their
`subject`, one artifact type per kind. They are listed through the registry's referrers API, or, on a
registry without it (Docker's registry 2.8), through the referrers tag scheme of the distribution
spec 1.1: an image index tagged `sha256-<hex>` lists the artifacts of that digest, and the client
that pushes an artifact keeps it up to date. Both ways are read, so a copy between registries of
either kind finds them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from runner.release.registry import Manifest, Registry

IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY).hexdigest()
PLATFORM = "io.gpustack.runner.platform"
T = TypeVar("T")  # on a copy pointing at an index: the member it speaks of


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback_tag(digest: str) -> str:
    """The referrers tag of a digest: `<algorithm>-<hex>` (distribution spec 1.1)."""
    return digest.replace(":", "-", 1)


def is_fallback_tag(tag: str) -> bool:
    alg, _, hex_ = tag.partition("-")
    return alg == "sha256" and len(hex_) == 64 and all(c in "0123456789abcdef" for c in hex_)


@dataclass(frozen=True)
class Artifact:
    """One artifact: its kind (artifactType), its one layer's media type and bytes, annotations."""

    artifact_type: str
    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """An artifact read back from a registry: its manifest's digest, its subject, its layer."""

    digest: str
    artifact_type: str
    subject: str
    media_type: str
    data: bytes
    annotations: Mapping[str, str]


def manifest_of(artifact: Artifact, layer_digest: str, subject: Mapping[str, object]) -> bytes:
    """The artifact's manifest: an empty config, its one layer, and the subject it refers to."""
    body = {"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "artifactType": artifact.artifact_type,
            "config": {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY)},
            "layers": [{"mediaType": artifact.media_type, "digest": layer_digest, "size": len(artifact.data)}],
            "subject": dict(subject), "annotations": dict(sorted(artifact.annotations.items()))}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def descriptor(m: Manifest) -> dict[str, object]:
    return {"mediaType": m.media_type, "digest": m.digest, "size": len(m.body)}


async def attach(registry: Registry, repo: str, subject: Manifest, artifact: Artifact) -> str:
    """Push an artifact that refers to `subject` (already in `repo`) and list it for that digest;
    pushing the same artifact again changes nothing. Returns the artifact manifest's digest."""
    await registry.upload_blob(repo, EMPTY)
    layer = await registry.upload_blob(repo, artifact.data)
    return await put_artifact(registry, repo, subject, manifest_of(artifact, layer, descriptor(subject)))


async def put_artifact(registry: Registry, repo: str, subject: Manifest, body: bytes) -> str:
    """Write an artifact manifest (its blobs already there) and list it for its subject."""
    digest = sha256(body)
    if await registry.manifest(repo, digest) is None:
        await registry.put_manifest(repo, digest, body, IMAGE_MANIFEST)
    if await registry.referrers_api(repo, subject.digest) is None:
        await _list_in_fallback(registry, repo, subject.digest, body)
    return digest


async def _list_in_fallback(registry: Registry, repo: str, subject: str, body: bytes) -> None:
    entries = await _fallback_entries(registry, repo, subject)
    digest = sha256(body)
    if any(e.get("digest") == digest for e in entries):
        return
    parsed = json.loads(body)
    entries.append({"mediaType": IMAGE_MANIFEST, "digest": digest, "size": len(body),
                    "artifactType": parsed["artifactType"], **({"annotations": parsed["annotations"]}
                                                               if parsed.get("annotations") else {})})
    index = json.dumps({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": entries}, indent=1).encode()
    await registry.put_manifest(repo, fallback_tag(subject), index, IMAGE_INDEX)


async def _fallback_entries(registry: Registry, repo: str, subject: str) -> list[dict]:
    found = await registry.manifest(repo, fallback_tag(subject))
    return list(json.loads(found.body).get("manifests") or []) if found is not None else []


async def listed(registry: Registry, repo: str, subject: str) -> list[dict]:
    """The descriptors of every artifact referring to `subject`: the API's answer, else the tag's."""
    api = await registry.referrers_api(repo, subject)
    return api if api is not None else await _fallback_entries(registry, repo, subject)


async def read(registry: Registry, repo: str, subject: str, artifact_type: str = "") -> list[Found]:
    """The artifacts referring to `subject` (of one type, when given), each read whole."""
    out = []
    for d in await listed(registry, repo, subject):
        if artifact_type and d.get("artifactType") != artifact_type:
            continue
        m = await registry.manifest(repo, d["digest"])
        if m is None:
            continue  # listed, then deleted: not there
        body = json.loads(m.body)
        layers = body.get("layers") or []
        data = await registry.blob(repo, layers[0]["digest"]) if layers else b""
        out.append(Found(m.digest, body.get("artifactType", ""), (body.get("subject") or {}).get("digest", ""),
                         layers[0]["mediaType"] if layers else "", data or b"", body.get("annotations") or {}))
    return out


async def carry(registry: Registry, repo: str, members: Sequence[tuple[str, str]], index: Manifest) -> int:
    """Point copies of each member's artifacts at the index that holds the members (same layers, the
    member's platform annotated), so the index says what it is too. Returns how many were added."""
    added = 0
    before = {d["digest"] for d in await listed(registry, repo, index.digest)}
    for platform, digest in members:
        for found in await read(registry, repo, digest):
            copy = Artifact(found.artifact_type, found.media_type, found.data,
                            {**found.annotations, PLATFORM: platform})
            body = manifest_of(copy, sha256(found.data), descriptor(index))
            if sha256(body) not in before:
                await put_artifact(registry, repo, index, body)
                added += 1
    return added


async def remove(registry: Registry, repo: str, subject: str) -> list[str]:
    """Delete every artifact referring to `subject`, and its referrers tag. Returns their digests."""
    gone = []
    for d in await listed(registry, repo, subject):
        await registry.delete_manifest(repo, d["digest"])
        gone.append(d["digest"])
    if await registry.manifest(repo, fallback_tag(subject)) is not None:
        await registry.delete_tag(repo, fallback_tag(subject))
    return gone


async def reachable(registry: Registry, repo: str) -> set[str]:
    """Every digest a tag of the repository names, directly or as a member of a tagged index."""
    out: set[str] = set()
    for tag in await registry.tags(repo):
        if is_fallback_tag(tag):
            continue
        found = await registry.manifest(repo, tag)
        if found is None:
            continue
        out.add(found.digest)
        if found.is_index:
            out.update(m["digest"] for m in json.loads(found.body).get("manifests", []))
    return out


async def sweep(registry: Registry, repo: str, before: set[str]) -> list[str]:
    """After tags were deleted: remove the artifacts of every digest no tag reaches any more (those
    reachable `before`, and every subject of a referrers tag). Returns the artifacts removed."""
    subjects = {t.replace("-", ":", 1) for t in await registry.tags(repo) if is_fallback_tag(t)}
    still = await reachable(registry, repo)
    gone: list[str] = []
    for digest in sorted((before | subjects) - still):
        gone += await remove(registry, repo, digest)
    return gone


async def sweeping(registry: Registry, repo: str, delete: Callable[[], Awaitable[T]]) -> tuple[T, list[str]]:
    """Run a deletion of tags (discard, prune), then remove the artifacts it left without an image."""
    before = await reachable(registry, repo)
    done = await delete()
    return done, await sweep(registry, repo, before)
