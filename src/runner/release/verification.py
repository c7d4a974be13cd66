"""`runner verify`: does a published image prove what it is and where it came from? For each platform
image of the tag: a provenance signed by whom the user trusts, whose subject is that image's digest
and whose target is the tag asked about; an SBOM that describes that digest and is byte for byte the
one the signed provenance names; and, when the catalog pins the tag, the digest it pins. Each kind of
mismatch is its own clear error (exit 2). `--mirror` compares the final tags across registries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.model.errors import UserError
from runner.release import referrers, sbom, slsa
from runner.release.attest import PROVENANCE_TYPE, SBOM_TYPE
from runner.release.signing import Trust, Unverified

if TYPE_CHECKING:
    from runner.release.registry import Registry


class Rejected(UserError):
    """The image does not prove what it claims; the message says which check failed and why."""


@dataclass
class Proven:
    """One platform image that passed every check."""

    platform: str
    digest: str
    signer: str
    target: dict
    revision: str
    builder: dict
    smoke_passed: bool
    packages: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(vars(self))


def members(body: bytes, digest: str) -> list[tuple[str, str]]:
    """(platform, digest) of each image an index holds ('' and the digest itself for one image)."""
    parsed = json.loads(body)
    if "manifests" not in parsed:
        return [("", digest)]
    out = []
    for m in parsed["manifests"]:
        p = m.get("platform") or {}
        if p.get("os") and p.get("os") != "unknown":  # attestation manifests some builders add
            out.append((f"{p['os']}/{p.get('architecture', '')}", m["digest"]))
    return out


async def verify_image(registry: Registry, repo: str, tag: str, trust: Trust, pinned: str = "") -> list[Proven]:
    """Check every platform image of repo:tag; raises Rejected at the first thing that does not hold."""
    ref = f"{registry.host}/{repo}:{tag}"
    found = await registry.manifest(repo, tag)
    if found is None:
        raise Rejected(f"{ref}: no such image")
    if pinned and found.digest != pinned:
        raise Rejected(f"{ref}: moved tag: the registry serves {found.digest}, the catalog pins {pinned}",
                       hint=f"see `runner catalog --history {tag}`; a re-push the catalog did not record is not ours")
    images = members(found.body, found.digest)
    on_index = await referrers.read(registry, repo, found.digest) if found.is_index else []
    return [await _verify_member(registry, repo, tag, ref, platform, digest, trust,
                                 [a for a in on_index if a.annotations.get(referrers.PLATFORM) == platform])
            for platform, digest in images]


async def _verify_member(registry: Registry, repo: str, tag: str, ref: str, platform: str, digest: str, trust: Trust,
                         carried: Sequence[referrers.Found]) -> Proven:
    where = f"{ref}" + (f" ({platform}, {digest[:19]})" if platform else "")
    arts = [*await referrers.read(registry, repo, digest), *carried]
    provenances = [a for a in arts if a.artifact_type == PROVENANCE_TYPE]
    if not provenances:
        raise Rejected(f"{where}: unsigned: no provenance is attached to the image",
                       hint="publish with --sign-key or --keyless")
    reasons, accepted = [], []
    for a in provenances:
        try:
            payload_type, payload, signer = trust.open(a.media_type, a.data)
        except Unverified as e:
            reasons.append(str(e))
            continue
        if payload_type != slsa.PAYLOAD_TYPE:
            reasons.append(f"the signed payload is {payload_type!r}, not an in-toto statement")
            continue
        accepted.append((_statement(payload, where), signer))
    if not accepted:
        raise Rejected(f"{where}: {reasons[0]}")
    statement, signer = accepted[0]
    if statement.get("predicateType") != slsa.PREDICATE_TYPE:
        raise Rejected(f"{where}: the signed statement is a {statement.get('predicateType')!r}, not SLSA provenance")
    if digest not in slsa.subjects(statement):
        raise Rejected(f"{where}: wrong digest: the signed provenance is for {', '.join(sorted(slsa.subjects(statement)))}, "
                       f"not this image ({digest})")
    target = slsa.target(statement)
    allowed = {target.get("tag", ""), f"{target.get('tag')}-dev",
               f"{target.get('tag')}-{str(target.get('platform', '')).replace('/', '-')}"}
    if tag not in allowed:
        raise Rejected(f"{where}: moved tag: the signed provenance is for {target.get('tag')} "
                       f"({target.get('platform')}), not {tag}")
    return Proven(platform or str(target.get("platform", "")), digest, signer, target,
                  statement["predicate"]["buildDefinition"]["externalParameters"].get("source", {}).get("revision", ""),
                  statement["predicate"]["runDetails"]["builder"],
                  _smoke_passed(statement), _check_sboms(arts, statement, digest, where))


def _statement(payload: bytes, where: str) -> dict:
    try:
        statement = json.loads(payload)
    except ValueError:
        raise Rejected(f"{where}: the signed provenance is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != slsa.STATEMENT_TYPE:
        raise Rejected(f"{where}: the signed payload is not an in-toto Statement v1")
    return statement


def _smoke_passed(statement: dict) -> bool:
    for b in statement["predicate"]["runDetails"].get("byproducts", []):
        if b.get("name") == "smoke":
            return bool((b.get("annotations") or {}).get("passed"))
    return False


def _check_sboms(arts: Sequence[referrers.Found], statement: dict, digest: str, where: str) -> dict[str, int]:
    signed = slsa.sbom_digest(statement)
    sboms = [a for a in arts if a.artifact_type == SBOM_TYPE]
    if not sboms:
        raise Rejected(f"{where}: no SBOM is attached to the image")
    for a in sboms:
        actual = referrers.sha256(a.data)
        if actual != signed:
            raise Rejected(f"{where}: tampered SBOM: the attached SBOM ({a.digest[:19]}) has digest {actual}, the "
                           f"signed provenance names {signed or 'none'}")
    doc = json.loads(sboms[0].data)
    if sbom.described_digest(doc) != digest:
        raise Rejected(f"{where}: the SBOM describes {sbom.described_digest(doc) or 'no image'}, not {digest}")
    return sbom.counts(doc)


@dataclass
class MirrorRow:
    tag: str
    source: str  # the source registry's digest ('' when the source lacks the tag)
    mirrors: dict[str, str] = field(default_factory=dict)  # mirror -> same | missing | differs: DIGEST | ...

    @property
    def ok(self) -> bool:
        return bool(self.source) and all(v == "same" for v in self.mirrors.values())

    def as_dict(self) -> dict:
        return {"tag": self.tag, "source": self.source, "mirrors": self.mirrors, "ok": self.ok}


async def check_mirrors(source: Registry, source_repo: str, mirrors: Sequence[tuple[Registry, str]],
                        tags: Sequence[str]) -> list[MirrorRow]:
    """Whether each mirror resolves each tag to the source's digest, with the artifacts it carries."""
    rows = []
    for tag in tags:
        row = MirrorRow(tag, await source.digest(source_repo, tag) or "")
        attested = bool(row.source) and bool(await referrers.listed(source, source_repo, row.source))
        for reg, repo in mirrors:
            name = f"{reg.host}/{repo}"
            digest = await reg.digest(repo, tag)
            if digest is None:
                row.mirrors[name] = "missing"
            elif digest != row.source:
                row.mirrors[name] = f"differs: {digest}"
            elif attested and not await referrers.listed(reg, repo, digest):
                row.mirrors[name] = "same digest, artifacts missing"
            else:
                row.mirrors[name] = "same"
        rows.append(row)
    return rows
