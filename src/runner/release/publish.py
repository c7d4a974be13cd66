"""The registry side of a release: publish all-or-nothing per tag, merge single-arch tags into -dev
indexes, promote by digest, discard and prune, keeping the catalog file in step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.model import catalog as catalog_mod
from runner.model.errors import UserError
from runner.model.naming import compose_tag, format_tag
from runner.model.targets import Target
from runner.release.pipeline import Builder, Built, Registry


@dataclass
class Publication:
    """What publish did for one tag."""

    tag: str
    dev_ref: str = ""
    digest: str = ""
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> single-arch digest
    skipped: str = ""  # why nothing was published


async def publish(built: Sequence[Built], engine: Builder, image_of: Callable[[str], str],
                  index: bool = True) -> list[Publication]:
    """Push single-arch images and the multi-arch -dev index of every tag whose platforms all built and
    passed their smoke tests. A tag with any failed platform publishes nothing at all. Without
    `index` (CI fan-out: one job per platform) only the single-arch images are pushed; `merge` then
    assembles the indexes."""
    by_tag: dict[str, list[Built]] = {}
    for b in built:
        by_tag.setdefault(b.target.tag, []).append(b)
    pubs = []
    for tag, images in by_tag.items():
        pub = Publication(tag)
        pubs.append(pub)
        wanted = set(images[0].target.platforms) if index else {b.platform for b in images}
        bad = [f"{b.platform}: {b.error or ', '.join(c.name for c in b.checks if not c.passed) or 'no checks ran'}"
               for b in images if not b.passed]
        missing = wanted - {b.platform for b in images}
        if bad or missing:
            pub.skipped = "; ".join(bad + [f"{p}: not built" for p in sorted(missing)])
            continue
        for b in images:
            b.digest = await engine.push(b.handle, image_of(format_tag(b.target, b.platform)))
            pub.platforms[b.platform] = b.digest
        if index:
            pub.dev_ref = image_of(format_tag(images[0].target, dev=True))
            pub.digest = await engine.push_index(pub.dev_ref, images)
    return pubs


async def merge(targets: Sequence[Target], engine: Builder, registry: Registry,
                image_of: Callable[[str], str]) -> list[Publication]:
    """Assemble each target's -dev index from its single-arch tags, only when every platform's tag is
    there (each was pushed by a job whose build and smoke tests passed)."""
    from runner.compose.plan import Leaf

    pubs = []
    for t in targets:
        pub = Publication(t.tag)
        pubs.append(pub)
        images = []
        for platform in t.platforms:
            ref = image_of(format_tag(t, platform))
            digest = await registry.digest(ref)
            if digest is None:
                pub.skipped = f"{ref} is missing: its build or smoke tests did not pass"
                break
            handle = await engine.from_ref(f"{ref.rsplit(':', 1)[0]}@{digest}", platform)
            images.append(Built(Leaf(t, platform, None), handle, digest=digest))  # type: ignore[arg-type]
            pub.platforms[platform] = digest
        if not pub.skipped:
            pub.dev_ref = image_of(format_tag(t, dev=True))
            pub.digest = await engine.push_index(pub.dev_ref, images)
    return pubs


@dataclass
class Promotion:
    tag: str
    digest: str = ""
    changed: bool = False
    skipped: str = ""


async def promote(targets: Sequence[Target], registry: Registry, image_of: Callable[[str], str],
                  catalog_file: Path | None = None, catalog_records: Callable | None = None) -> list[Promotion]:
    """Copy each target's tested -dev index to its final tag by digest (no rebuild). Running it again
    changes nothing. The catalog file, when given, gains the promoted targets in one atomic write."""
    results = []
    for t in targets:
        dev, final = image_of(format_tag(t, dev=True)), image_of(t.tag)
        digest = await registry.digest(dev)
        if digest is None:
            results.append(Promotion(t.tag, skipped=f"{dev} is not published"))
            continue
        changed = await registry.digest(final) != digest
        if changed:
            await registry.copy(f"{dev.rsplit(':', 1)[0]}@{digest}", final)
            if await registry.digest(final) != digest:
                raise UserError(f"promotion of {t.tag} did not land: {final} does not resolve to {digest}")
        results.append(Promotion(t.tag, digest, changed))
    if catalog_file and catalog_records:
        promoted = [t for t, r in zip(targets, results) if not r.skipped]
        _update_catalog(catalog_file, add=catalog_records(promoted))
    return results


async def discard(targets: Sequence[Target], registry: Registry, image_of: Callable[[str], str],
                  catalog_file: Path | None = None) -> list[str]:
    """Delete every tag of the targets (final, -dev and single-arch) and drop them from the catalog."""
    removed = []
    for t in targets:
        refs = [image_of(t.tag), image_of(format_tag(t, dev=True))] + [image_of(format_tag(t, p)) for p in t.platforms]
        for ref in refs:
            if await registry.digest(ref) is not None:
                await registry.delete(ref)
                removed.append(ref)
    if catalog_file:
        images = {image_of(t.tag) for t in targets}
        _update_catalog(catalog_file, drop=lambda r: any(same_image(r.docker_image, ref) for ref in images))
    return removed


async def prune(repository: str, registry: Registry, known_tags: set[str], parse: Callable[[str], Any],
                catalog_file: Path | None = None, intermediates: bool = False) -> list[str]:
    """Delete runner tags of the repository whose target is no longer in the matrix, and with
    `intermediates`, the -dev and single-arch tags of targets already promoted."""
    tags = await registry.tags(repository)
    present = set(tags)
    doomed = []
    for tag in tags:
        try:
            p = parse(f"{repository}:{tag}")
        except UserError:
            continue  # not ours: leave it alone
        multi = compose_tag(p.backend, p.backend_version, p.backend_variant, p.service, p.service_version)
        if multi not in known_tags:
            doomed.append(tag)
        elif intermediates and (p.dev or p.platform) and multi in present:
            doomed.append(tag)
    for tag in doomed:
        await registry.delete(f"{repository}:{tag}")
    if catalog_file:
        gone = {f"{repository}:{t}" for t in doomed}
        _update_catalog(catalog_file, drop=lambda r: any(same_image(r.docker_image, ref) for ref in gone))
    return doomed


def same_image(catalog_image: str, ref: str) -> bool:
    """Whether a catalog's image (namespace/repository:tag, no registry) names the same image as a
    full reference with its registry."""
    return ref == catalog_image or ref.endswith("/" + catalog_image)


def _update_catalog(path: Path, add: Sequence = (), drop: Callable | None = None) -> None:
    records = catalog_mod.load(path) if path.exists() else []
    keep = [r for r in records if not (drop and drop(r))]
    new_keys = {(r.docker_image, r.platform) for r in add}
    keep = [r for r in keep if (r.docker_image, r.platform) not in new_keys] + list(add)
    catalog_mod.write(path, keep)
