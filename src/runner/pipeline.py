"""The release flow both engines share: build and smoke-test every selected target and platform
under a concurrency limit, publish all-or-nothing per tag, promote by digest, discard and prune, and
keep the catalog and the report in step. Engines only build, run checks and push."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from runner import catalog as catalog_mod
from runner.errors import UserError
from runner.naming import compose_tag, format_tag
from runner.plan import Leaf, Plan
from runner.smoke import Check, CheckResult, checks_for
from runner.targets import Target


class BuildError(Exception):
    """An engine could not build a stage; the message names what failed."""


class Builder(Protocol):
    """What an engine does: build a leaf stage, run a check inside it, push images."""

    name: str

    async def build(self, leaf: Leaf) -> tuple[Any, str, int]: ...  # handle, image id/digest, size in bytes
    async def run_check(self, handle: Any, check: Check) -> tuple[int, str]: ...  # exit code, output
    async def entrypoint(self, handle: Any) -> list[str]: ...
    async def push(self, handle: Any, ref: str) -> str: ...  # digest
    async def push_index(self, ref: str, images: Sequence[Built]) -> str: ...  # digest of the index
    async def from_ref(self, ref: str, platform: str) -> Any: ...  # a handle for an already pushed image
    async def run_device_check(self, handle: Any, leaf: Leaf, pack: Path) -> tuple[int, str]: ...


class Registry(Protocol):
    """Registry operations by reference: resolve a tag, copy by digest, delete, list tags."""

    async def digest(self, ref: str) -> str | None: ...
    async def copy(self, src: str, dst: str) -> None: ...
    async def delete(self, ref: str) -> None: ...
    async def tags(self, repository: str) -> list[str]: ...


@dataclass
class Built:
    """One target on one platform after build and smoke tests."""

    leaf: Leaf
    handle: Any = None
    image_id: str = ""
    size: int = 0
    seconds: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""
    digest: str = ""  # set when published

    @property
    def target(self) -> Target:
        return self.leaf.target

    @property
    def platform(self) -> str:
        return self.leaf.platform

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.checks) and all(c.passed for c in self.checks)

    def report(self) -> dict:
        failed = [c for c in self.checks if not c.passed]
        return {
            "tag": self.target.tag, "platform": self.platform, "image_id": self.image_id, "digest": self.digest,
            "size": self.size, "build_seconds": round(self.seconds, 3), "error": self.error,
            "smoke": {"passed": self.passed, "failed": [c.name for c in failed], "checks": [c.as_dict() for c in self.checks]},
        }


async def build_all(plan: Plan, engine: Builder, pack: Path, limit: int = 4,
                    progress: Callable[[Built], None] | None = None, gpu: bool = False) -> list[Built]:
    """Build every leaf of the plan and run its smoke checks, at most `limit` at a time. A failure is
    recorded on its target and platform; the others go on. With `gpu`, each image also runs its
    backend's tiny device check on an accelerator."""
    results = [Built(leaf) for leaf in plan.leaves]
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def one(b: Built) -> None:
        async with limiter:
            start = time.perf_counter()
            try:
                b.handle, b.image_id, b.size = await engine.build(b.leaf)
            except BuildError as e:
                b.error = str(e)
            b.seconds = time.perf_counter() - start
            if not b.error:
                b.checks = await smoke(engine, b, pack, gpu)
        if progress:
            progress(b)

    async with anyio.create_task_group() as tg:
        for b in results:
            tg.start_soon(one, b)
    return results


async def smoke(engine: Builder, b: Built, pack: Path, gpu: bool = False) -> list[CheckResult]:
    """Run the target's smoke checks inside its built image, plus the entrypoint check (and the
    device check of the backend's profile, with `gpu`)."""
    out: list[CheckResult] = []
    entry = await engine.entrypoint(b.handle)
    ok = entry[:1] in (["tini"], ["/usr/bin/tini"]) and entry[1:] == ["--"]
    out.append(CheckResult("entrypoint", ok, 0, "" if ok else "entrypoint is not tini --", " ".join(entry)))
    checks = checks_for(pack, b.target, b.leaf.stage)
    batch = getattr(engine, "run_checks", None)  # engines that can run all checks in one container
    runs = await batch(b.handle, checks) if batch else [await engine.run_check(b.handle, c) for c in checks]
    out += [check.judge(code, output) for check, (code, output) in zip(checks, runs)]
    if gpu:
        from runner.profiles import load_profile

        check = Check("device", load_profile(pack, b.target.backend).device_check)
        out.append(check.judge(*await engine.run_device_check(b.handle, b.leaf, pack)))
    return out


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
    from runner.plan import Leaf

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


def report(built: Sequence[Built], publications: Sequence[Publication] = ()) -> dict:
    """JSON report: per target and platform, digest, size, build time and smoke results."""
    pubs = {p.tag: p for p in publications}
    return {
        "images": [b.report() for b in built],
        "published": [{"tag": p.tag, "dev": p.dev_ref, "digest": p.digest, "platforms": p.platforms, "skipped": p.skipped}
                      for p in pubs.values()],
        "passed": sum(b.passed for b in built), "failed": sum(not b.passed for b in built),
    }
