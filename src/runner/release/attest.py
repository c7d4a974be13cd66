"""What publish and merge attach to the images they push: per platform image, its SBOM (read from
inside the image) and its signed provenance, as OCI referrers of that image; per -dev index, copies
of its members' artifacts pointing at the index, written before the index's tag so the tag never
names an index that cannot prove where it came from. Promotion points the final tag at the same
index, so its artifacts go with it; `runner mirror` copies them; discard and prune remove them.

An image that already carries an SBOM and a provenance is left as it is: publishing again changes
nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.compose.stages import StageKind
from runner.model.errors import Failed
from runner.release import referrers, sbom, slsa
from runner.release.signing import Signer

if TYPE_CHECKING:
    from runner.release.pipeline import Built
    from runner.release.publish import Repository
    from runner.release.registry import Manifest, Registry

SBOM_TYPE = sbom.MEDIA_TYPE  # artifactType of an SBOM
PROVENANCE_TYPE = slsa.PAYLOAD_TYPE  # artifactType of a signed in-toto statement (DSSE or Sigstore bundle)
PREDICATE = "in-toto.io/predicate-type"
INVENTORY_SECONDS = 900


@dataclass
class Carrier:
    """Attaches what the members of an index carry to the index itself (merge needs no key)."""

    notes: list[str] = field(default_factory=list)

    async def platform(self, registry: Registry, repo: Repository, b: Built, ref: str) -> None:
        """Nothing: a platform image's artifacts are made where it is built (publish, a CI job)."""

    async def index(self, registry: Registry, repo: Repository, members: Sequence[tuple[str, str]],
                    index: Manifest) -> None:
        added = await referrers.carry(registry, repo.path, members, index)
        if added:
            self.notes.append(f"{repo.path}@{index.digest[:19]}: {added} artifacts of its members attached")


@dataclass
class Attester(Carrier):
    """Makes, signs and attaches each platform image's SBOM and provenance."""

    signer: Signer | None = None
    engine: Any = None  # the pipeline's Builder, for the inventory run, base digests and its version
    build_info: dict[str, str] = field(default_factory=dict)
    started: str = field(default_factory=slsa.now)

    async def platform(self, registry: Registry, repo: Repository, b: Built, ref: str) -> None:
        """SBOM and signed provenance of one pushed platform image (b.digest), as its referrers."""
        assert self.signer is not None
        subject = await registry.manifest(repo.path, b.digest)
        if subject is None:
            raise Failed(f"attest {ref}: {repo.path}@{b.digest} is not in the registry")
        kinds = {d.get("artifactType") for d in await referrers.listed(registry, repo.path, b.digest)}
        if {SBOM_TYPE, PROVENANCE_TYPE} <= kinds:
            self.notes.append(f"{ref}: attested already")
            return
        code, output = await self.engine.run_script(b.handle, sbom.SCRIPT, INVENTORY_SECONDS)
        if code != 0:
            raise Failed(f"attest {ref}: listing the image's packages exited {code}: {output[-400:]}")
        doc = sbom.document(sbom.parse(output), sbom.native_components(b.leaf.stage), image=ref, digest=b.digest,
                            platform=b.platform, created=self.build_info.get("created", slsa.now()),
                            namespace_base=self.build_info.get("source", "https://github.com/gpustack/runner"))
        data = sbom.dumps(doc)
        await referrers.attach(registry, repo.path, subject, referrers.Artifact(SBOM_TYPE, SBOM_TYPE, data))
        facts = slsa.Facts(
            target=b.target, platform=b.platform, leaf=b.leaf.stage, image=ref, digest=b.digest,
            build_info=self.build_info, bases=await self._bases(b), engine=getattr(self.engine, "name", "unknown"),
            engine_version=await self._engine_version(), smoke=[c.as_dict() for c in b.checks],
            sbom_digest="sha256:" + hashlib.sha256(data).hexdigest(), mirrors=self._mirrors(),
            substitutions=self._substitutions(b), started=self.started)
        media_type, signed = self.signer.sign(slsa.dumps(slsa.statement(facts)), slsa.PAYLOAD_TYPE)
        await referrers.attach(registry, repo.path, subject, referrers.Artifact(
            PROVENANCE_TYPE, media_type, signed, {PREDICATE: slsa.PREDICATE_TYPE}))
        counts = ", ".join(f"{n} {k}" for k, n in sbom.counts(doc).items()) or "no packages"
        self.notes.append(f"{ref}: SBOM ({counts}) and provenance signed by {self.signer.description}")

    async def _bases(self, b: Built) -> dict[str, str]:
        from runner.release.pipeline import BuildError

        out = {}
        pulled = self._mirror_map().image  # named as the recipe names it, by the digest of what was pulled
        for stage in b.leaf.stage.chain():
            if stage.kind == StageKind.BASE and stage.image:
                try:
                    out[stage.image] = await self.engine.base_digest(pulled(stage.image), stage.platform)
                except (BuildError, AttributeError) as e:
                    raise Failed(f"attest {b.target.tag} {b.platform}: the base image {stage.image} has no "
                                 f"digest to name ({e})") from None
        return out

    async def _engine_version(self) -> str:
        ask = getattr(self.engine, "engine_version", None)
        return await ask() if ask is not None else ""

    def _mirror_map(self):
        from runner.compose.mirrors import Mirrors

        mirrors = getattr(self.engine, "mirrors", None) or getattr(getattr(self.engine, "stages", None), "mirrors", None)
        return mirrors or Mirrors()

    def _mirrors(self) -> dict[str, str]:
        return self._mirror_map().as_dict()

    def _substitutions(self, b: Built) -> list[str]:
        cache = getattr(self.engine, "build_cache", None)
        names = {f"{s.kind} {s.name} {s.platform}" for s in b.leaf.stage.chain()}
        return [f for f in (cache.found if cache is not None else []) if f in names]

