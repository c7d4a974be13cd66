"""The registry side of a release: publish all-or-nothing per tag, merge single-arch tags into -dev
indexes, promote by digest, discard and prune, keeping the catalog file in step.

All-or-nothing is judged against the matrix, not the selection: a -dev index is written only when
every platform of the matrix target passed (in this run, or as tested single-arch tags for merge).
Everything that can be checked (credentials, the catalog, whether the registry deletes) is checked
before the first change; a change that is already in place is not made again."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.model.errors import Failed, InfrastructureError
from runner.model.naming import compose_tag, format_tag
from runner.model.targets import Target
from runner.release.catalog_sync import CatalogSync
from runner.release.pipeline import BuildError, Builder, Built

if TYPE_CHECKING:  # the catalog models (pydantic) and the registry client (httpx) load only where used
    from runner.model.catalog import CatalogFile, RunnerRecord
    from runner.release.attest import Carrier
    from runner.release.registry import Registry


@dataclass(frozen=True)
class Repository:
    """Where images go: registry host, namespace and repository name."""

    registry: str
    namespace: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.path}:{tag}"

    def catalog_image(self, tag: str) -> str:
        """How the catalog names an image: namespace/repository:tag, without the registry."""
        return f"{self.path}:{tag}"


def whole_tags_only(platform: str, op: str) -> None:
    """merge, promote and discard act on multi-arch tags, every platform of a target at once: a
    one-platform selection of them is refused, with the reason."""
    if platform:
        from runner.model.errors import UserError

        raise UserError(f"{op} acts on whole multi-arch tags (every platform of a target at once), not on one "
                        "platform of them", value=platform,
                        hint="drop --platform: a -dev index, a final tag and the tags discard removes hold "
                             "every platform of the target")


@dataclass
class Publication:
    """What publish or merge did for one tag."""

    tag: str
    dev_ref: str = ""
    digest: str = ""
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> single-arch digest
    skipped: str = ""  # why nothing was published
    error: str = ""  # a push or index write that failed (the run fails; running it again finishes it)
    note: str = ""  # what was left to do (an index not written for a narrowed selection)
    pushed: int = 0  # single-arch pushes that changed the registry
    index_changed: bool = False
    fault: bool = False  # the error is the registry's or the network's (InfrastructureError), not the images'


async def publish(built: Sequence[Built], engine: Builder, registry: Registry, repo: Repository,
                  matrix_platforms: Mapping[str, Sequence[str]], index: bool = True,
                  attest: Carrier | None = None) -> list[Publication]:
    """Push the single-arch images of every tag whose built platforms all passed, then its -dev index
    from their digests when every platform of the matrix target is among them. A tag with a failed
    platform pushes nothing at all; without `index` (CI fan-out) only single-arch images are pushed.
    With `attest`, each image gets its SBOM and signed provenance before any index names it."""
    by_tag: dict[str, list[Built]] = {}
    for b in built:
        by_tag.setdefault(b.target.tag, []).append(b)
    pubs = []
    for tag, images in by_tag.items():
        pub = Publication(tag)
        pubs.append(pub)
        bad = [f"{b.platform}: {b.why_not()}" for b in images if not b.passed]
        if bad:
            pub.skipped = "; ".join(bad) + "; nothing of this tag was pushed"
            continue
        try:
            await _publish_tag(images, engine, registry, repo, pub, matrix_platforms[tag], index, attest)
        except (BuildError, Failed) as e:  # one tag's registry trouble neither hides the others nor the report
            pub.error, pub.fault = str(e), isinstance(e, InfrastructureError)
            pub.skipped = (f"{e}; the -dev index was not written (single-arch pushes that landed are kept); "
                           "run the same command again to finish")
    return pubs


async def _publish_tag(images: Sequence[Built], engine: Builder, registry: Registry, repo: Repository,
                       pub: Publication, matrix_platforms: Sequence[str], index: bool, attest: Carrier | None) -> None:
    for b in sorted(images, key=lambda b: b.platform):
        ref = repo.ref(format_tag(b.target, b.platform))
        b.digest, changed = await _push(engine, registry, repo, b, ref)
        pub.platforms[b.platform] = b.digest
        pub.pushed += changed
        if attest is not None:
            await attest.platform(registry, repo, b, ref)
    if not index:
        return
    missing = sorted(set(matrix_platforms) - set(pub.platforms))
    if missing:
        pub.note = (f"-dev index not written: {', '.join(missing)} not built in this run; build and push "
                    f"them single-arch (--platform P --single-arch), then merge")
        return
    dev = format_tag(images[0].target, dev=True)
    pub.digest, pub.index_changed = await _index(registry, repo, dev, pub.platforms, attest)
    pub.dev_ref = repo.ref(dev)  # only once the index is there


async def _push(engine: Builder, registry: Registry, repo: Repository, b: Built, ref: str) -> tuple[str, int]:
    """Push one image unless the engine knows the tag already holds it; (digest, 1 if pushed)."""
    known = getattr(engine, "known_digest", None)
    if known is not None and (digest := await known(b.handle, f"{repo.registry}/{repo.path}")):
        if await registry.digest(repo.path, ref.rsplit(":", 1)[1]) == digest:
            return digest, 0
    return await engine.push(b.handle, ref), 1


async def _index(registry: Registry, repo: Repository, tag: str, platforms: Mapping[str, str],
                 attest: Carrier | None = None) -> tuple[str, bool]:
    members = sorted(platforms.items())
    body, media_type = await registry.index_manifest(repo.path, members)
    if attest is not None:  # the index's artifacts first: its tag never names an index without them
        from runner.release.referrers import sha256
        from runner.release.registry import Manifest

        await attest.index(registry, repo, members, Manifest(body, media_type, sha256(body)))
    current = await registry.manifest(repo.path, tag)
    if current is not None and current.body == body:
        return current.digest, False
    return await registry.put_manifest(repo.path, tag, body, media_type), True


async def merge(targets: Sequence[Target], registry: Registry, repo: Repository,
                attest: Carrier | None = None) -> list[Publication]:
    """Write each target's -dev index from its single-arch tags, only when every platform of the
    matrix target has one (each was pushed by a job whose build and smoke tests passed); with
    `attest`, the index carries its members' SBOMs and provenance."""
    pubs = []
    for t in targets:
        pub = Publication(t.tag)
        pubs.append(pub)
        for platform in t.platforms:
            tag = format_tag(t, platform)
            digest = await registry.digest(repo.path, tag)
            if digest is None:
                pub.skipped = f"{repo.ref(tag)} is missing: its build or smoke tests did not pass"
                break
            pub.platforms[platform] = digest
        if not pub.skipped:
            pub.dev_ref = repo.ref(format_tag(t, dev=True))
            pub.digest, pub.index_changed = await _index(registry, repo, format_tag(t, dev=True), pub.platforms,
                                                         attest)
    return pubs


@dataclass
class Promotion:
    tag: str
    digest: str = ""
    changed: bool = False
    skipped: str = ""


async def promote(targets: Sequence[Target], registry: Registry, repo: Repository, catalog: CatalogFile | None,
                  records: Callable[[Sequence[Target]], list[RunnerRecord]], skip_missing: bool = False) -> list[Promotion]:
    """Point each target's final tag at its tested -dev index, byte for byte (no rebuild); running it
    again changes nothing. Every -dev index is read first: a missing one stops the run before any
    change (or, with `skip_missing`, skips that target). The catalog gains the promoted targets."""
    async with CatalogSync(catalog, registry, repo) as book:
        devs = {t.tag: await registry.manifest(repo.path, format_tag(t, dev=True)) for t in targets}
        missing = [repo.ref(format_tag(t, dev=True)) for t in targets if devs[t.tag] is None]
        if missing and not skip_missing:
            raise Failed(f"not published, so nothing was promoted: {', '.join(missing)}; publish them first, or "
                         "promote the others with --skip-missing")
        if catalog is not None:
            book.expect(add=records([t for t in targets if devs[t.tag] is not None]))
        results = []
        for t in targets:
            dev = devs[t.tag]
            if dev is None:
                results.append(Promotion(t.tag, skipped=f"{repo.ref(format_tag(t, dev=True))} is not published"))
                continue
            changed = await registry.digest(repo.path, t.tag) != dev.digest
            if changed:
                landed = await registry.put_manifest(repo.path, t.tag, dev.body, dev.media_type)
                if landed != dev.digest:
                    raise Failed(f"promotion of {t.tag} did not land: {repo.ref(t.tag)} is {landed}, not {dev.digest}")
            results.append(Promotion(t.tag, dev.digest, changed))
        book.commit()
    return results


async def discard(targets: Sequence[Target], registry: Registry, repo: Repository,
                  catalog: CatalogFile | None) -> list[str]:
    """Delete every tag of the targets (final, -dev and single-arch) and drop them from the catalog."""
    async with CatalogSync(catalog, registry, repo) as book:
        await _deletable(registry, repo)
        book.expect(drop=[repo.catalog_image(t.tag) for t in targets])
        book.commit()  # out of the catalog before any tag is gone
        removed = []
        for t in targets:
            for tag in [t.tag, format_tag(t, dev=True), *(format_tag(t, p) for p in t.platforms)]:
                if await registry.digest(repo.path, tag) is not None:
                    await registry.delete_tag(repo.path, tag)
                    removed.append(repo.ref(tag))
    return removed


async def prune(registry: Registry, repo: Repository, known_tags: set[str], parse: Callable[[str], Any],
                catalog: CatalogFile | None, intermediates: bool = False) -> list[str]:
    """Delete runner tags of the repository whose target is no longer in the matrix, and with
    `intermediates`, the -dev and single-arch tags of targets already promoted."""
    from runner.model.errors import UserError

    async with CatalogSync(catalog, registry, repo) as book:
        tags = await registry.tags(repo.path)
        present = set(tags)
        doomed = []
        for tag in tags:
            try:
                p = parse(f"{repo.path}:{tag}")
            except UserError:
                continue  # not ours: leave it alone
            multi = compose_tag(p.backend, p.backend_version, p.backend_variant, p.service, p.service_version)
            if multi not in known_tags or (intermediates and (p.dev or p.platform) and multi in present):
                doomed.append(tag)
        if doomed:
            await _deletable(registry, repo)
            book.expect(drop=[repo.catalog_image(t) for t in doomed])
            book.commit()  # out of the catalog before any tag is gone
        for tag in doomed:
            await registry.delete_tag(repo.path, tag)
    return doomed


async def _deletable(registry: Registry, repo: Repository) -> None:
    if not await registry.delete_supported(repo.path):
        raise Failed(f"{registry.host} refuses to delete manifests through the registry API, so no tag was "
                     "touched; delete the tags with the registry's own tools (Docker Hub: its web API)")
