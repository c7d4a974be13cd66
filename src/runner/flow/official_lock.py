"""The official images the selected rows layer (runner.compose.official): which digest each one builds
from, and `--lock`, which asks each image's registry (through the mirror map) for the digest its tag
names now and records it in pack/<backend>/official.lock.yaml, a change to review like a recipe's."""

from __future__ import annotations

from pathlib import Path

from runner.compose.mirrors import full_reference
from runner.compose.official import LOCK_NAME, OfficialImage, lock, official_images, require_pinned, unpinned
from runner.model.files import write_atomic

__all__ = ["OfficialImage", "lock_digests", "official_images", "require_pinned", "unpinned"]

HEADER = """# The official images the rows of recipe.py that layer one start from (OFFICIAL), by tag, and the
# digest each one builds from. `runner official --lock` records a digest where the registry answers;
# a changed digest is a changed base: review it as a recipe change. null: not pinned yet (no release).
"""


async def lock_digests(project, images: list[OfficialImage], refresh: bool = False) -> list[str]:
    """Ask each image's registry for the digest its tag names (each image through the mirror map) and
    write the lock files of the backends that got one; returns what could not be checked, and why."""
    import httpx

    from runner.release.registry import Registry, RegistryError, split_reference

    mirrors = project.mirror_map()
    not_checked: list[str] = []
    silent: dict[str, str] = {}  # a host that did not answer once is not asked again in this run
    for o in images:
        if o.digest and not refresh:
            continue
        host, repo, tag = split_reference(full_reference(mirrors.image(o.image)))
        if host in silent:
            not_checked.append(f"not checked here: {o.image}: {host} did not answer earlier in this run")
            continue
        try:
            async with Registry(host, timeout=15.0, retry_seconds=10.0) as reg:
                digest = await reg.digest(repo, tag)
        except (RegistryError, OSError, httpx.HTTPError) as e:
            silent[host] = str(e).splitlines()[0][:160]
            not_checked.append(f"not checked here: {o.image}: {host} did not answer ({silent[host]})")
            continue
        if digest is None:
            not_checked.append(f"not checked here: {o.image}: {host} has no such tag")
            continue
        o.digest = digest
    by_backend: dict[str, list[OfficialImage]] = {}
    for o in images:
        by_backend.setdefault(o.backend, []).append(o)
    for backend, found in by_backend.items():
        recipe_dir = project.recipes[backend].path.parent
        entries = {**lock(recipe_dir), **{o.image: o.digest for o in found if o.digest}}
        _write(recipe_dir / LOCK_NAME, entries, [o.image for o in found if not o.digest])
    return not_checked


def _write(path: Path, entries: dict[str, str], unpinned_images: list[str]) -> None:
    from runner.compose import official

    # an image reference is a plain YAML key: letters, digits and . _ : / @ - with no ": " in it
    lines = [f"{image}: {digest}" for image, digest in sorted(entries.items())]
    lines += [f"{image}: null" for image in sorted(set(unpinned_images) - set(entries))]
    text = HEADER + "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text, "official-image lock")
    official._lock.cache_clear()
