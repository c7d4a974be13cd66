"""What changed between two consumer catalogs, image by image and per backend: the comparison a
release issue or pull request states (added, deprecated, un-deprecated, removed images, platforms).

Images are matched by tag (the part after the repository), so a catalog published under another
namespace still compares with gpustack-runner's; a change of repository is reported once, apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from runner.model.catalog import RunnerRecord

KINDS = ("added", "deprecated", "undeprecated", "removed", "platforms")
KIND_TITLES = {"added": "Added", "deprecated": "Deprecated", "undeprecated": "Un-deprecated",
               "removed": "Removed", "platforms": "Platform changes"}


@dataclass(frozen=True)
class ImageEntry:
    """One image of a catalog: its records' shared fields and the platforms it is listed for."""

    backend: str
    tag: str
    repository: str
    service: str
    service_version: str
    deprecated: bool
    platforms: frozenset[str]


@dataclass(frozen=True)
class ImageChange:
    """One image that differs between the catalogs (platforms_* only for kind "platforms", and for
    an image that changed its deprecation and its platforms at once)."""

    kind: str
    backend: str
    tag: str
    service: str
    service_version: str
    platforms: tuple[str, ...]
    platforms_added: tuple[str, ...] = ()
    platforms_removed: tuple[str, ...] = ()

    def to_json(self) -> dict:
        data = {"kind": self.kind, "backend": self.backend, "tag": self.tag, "service": self.service,
                "service_version": self.service_version, "platforms": list(self.platforms)}
        if self.platforms_added or self.platforms_removed:
            data |= {"platforms_added": list(self.platforms_added), "platforms_removed": list(self.platforms_removed)}
        return data


@dataclass
class CatalogDiff:
    """Every difference between OLD and NEW, in a stable order (backend, kind, tag)."""

    old_label: str
    new_label: str
    changes: list[ImageChange] = field(default_factory=list)
    repositories: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    old_images: int = 0
    new_images: int = 0

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, dict[str, int]]:
        """backend -> kind -> how many images (kinds with none left out)."""
        out: dict[str, dict[str, int]] = {}
        for c in self.changes:
            per = out.setdefault(c.backend, {})
            per[c.kind] = per.get(c.kind, 0) + 1
        return out

    def to_json(self) -> dict:
        old_repos, new_repos = self.repositories
        return {"old": self.old_label, "new": self.new_label, "old_images": self.old_images,
                "new_images": self.new_images, "repositories": {"old": list(old_repos), "new": list(new_repos)},
                "counts": self.counts(), "changes": [c.to_json() for c in self.changes]}

    def markdown(self, heading: str = "##") -> str:
        """The diff as a release issue or pull request states it: a count table, then per backend the
        images of each kind."""
        lines = [f"{heading} Catalog changes: `{self.old_label}` → `{self.new_label}`", "",
                 f"{self.old_images} images before, {self.new_images} after."]
        old_repos, new_repos = self.repositories
        if old_repos != new_repos:
            lines.append(f"Repository: {', '.join(old_repos) or '-'} → {', '.join(new_repos) or '-'} "
                         "(images are matched by tag).")
        if self.empty:
            return "\n".join([*lines, "", "No image changed."]) + "\n"
        lines += ["", "| backend | " + " | ".join(KIND_TITLES[k].lower() for k in KINDS) + " |",
                  "|---" * (len(KINDS) + 1) + "|"]
        for backend, per in sorted(self.counts().items()):
            lines.append(f"| {backend} | " + " | ".join(str(per.get(k, 0)) for k in KINDS) + " |")
        for backend in sorted({c.backend for c in self.changes}):
            lines += ["", f"{heading}# {backend}"]
            for kind in KINDS:
                mine = [c for c in self.changes if c.backend == backend and c.kind == kind]
                if mine:
                    lines += ["", f"{KIND_TITLES[kind]}:", ""]
                    lines += [f"- `{c.tag}` ({_platform_text(c)})" for c in mine]
        return "\n".join(lines) + "\n"


def _platform_text(c: ImageChange) -> str:
    moved = [f"+{p}" for p in c.platforms_added] + [f"-{p}" for p in c.platforms_removed]
    return ", ".join(moved) if moved else ", ".join(c.platforms)


def _version_key(text: str) -> tuple:
    """Versions in release order (0.5.9 before 0.5.10), anything unparsable after them as text."""
    try:
        return (0, Version(text), "")
    except InvalidVersion:
        return (1, Version("0"), text)


def images(records: Iterable[RunnerRecord]) -> dict[str, ImageEntry]:
    """tag -> the image its records describe (an image deprecated on any platform counts as deprecated)."""
    grouped: dict[str, list[RunnerRecord]] = {}
    for r in records:
        grouped.setdefault(r.docker_image.rpartition(":")[2], []).append(r)
    return {
        tag: ImageEntry(backend=rs[0].backend, tag=tag, repository=rs[0].docker_image.rpartition(":")[0],
                        service=rs[0].service, service_version=rs[0].service_version,
                        deprecated=any(r.deprecated for r in rs), platforms=frozenset(r.platform for r in rs))
        for tag, rs in grouped.items()
    }


def diff(old: Iterable[RunnerRecord], new: Iterable[RunnerRecord], old_label: str = "old",
         new_label: str = "new") -> CatalogDiff:
    """Compare two catalogs image by image."""
    before, after = images(old), images(new)
    changes: list[ImageChange] = []
    for tag in before.keys() | after.keys():
        was, now = before.get(tag), after.get(tag)
        entry = now or was
        assert entry is not None
        base = dict(backend=entry.backend, tag=tag, service=entry.service, service_version=entry.service_version,
                    platforms=tuple(sorted(entry.platforms)))
        if was is None:
            changes.append(ImageChange("added", **base))
            continue
        if now is None:
            changes.append(ImageChange("removed", **base))
            continue
        moved = dict(platforms_added=tuple(sorted(now.platforms - was.platforms)),
                     platforms_removed=tuple(sorted(was.platforms - now.platforms)))
        if was.deprecated != now.deprecated:
            changes.append(ImageChange("deprecated" if now.deprecated else "undeprecated", **base, **moved))
        elif now.platforms != was.platforms:
            changes.append(ImageChange("platforms", **base, **moved))
    changes.sort(key=lambda c: (c.backend, KINDS.index(c.kind), c.service, _version_key(c.service_version), c.tag))
    return CatalogDiff(old_label, new_label, changes,
                       (tuple(sorted({e.repository for e in before.values()})),
                        tuple(sorted({e.repository for e in after.values()}))),
                       len(before), len(after))
