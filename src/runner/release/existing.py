"""Smoke tests of images that already exist: a -dev index before promotion, any published runner
image, or a local image built elsewhere. The image's tag names its target (or `target` does, for a
tag that is not a runner tag); each platform is tested on its own, with the checks a build of that
target would get, and the results come back as Built records (the build report's shape)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.compose.plan import Leaf
from runner.compose.project import Project
from runner.model.errors import UserError
from runner.release.pipeline import Built, SmokeMemory, describe, smoke


class Fetcher(Protocol):
    """What an engine offers to test an existing image: a handle for a reference on a platform."""

    async def existing(self, ref: str, platform: str) -> tuple[Any, str]: ...  # handle, image ID ('' if unknown)


@dataclass(frozen=True)
class Subject:
    """One image reference to test, the target it is, and the platforms to test it on."""

    ref: str
    tag: str
    platforms: tuple[str, ...]


def check_reference(ref: str) -> None:
    """Refuse what is not an image reference before any engine sees it (never an option to docker)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,511}", ref):
        raise UserError("not an image reference", value=ref,
                        allowed="[registry/]name[:tag][@digest]: letters, digits and . _ : / @ -, not starting with -")


def subjects(project: Project, refs: Sequence[str], target: str = "", platform: str = "") -> list[Subject]:
    """What to test for each reference: its target from its tag (or `target`) and its platforms (the
    tag's own, else `platform`, else every platform of the target)."""
    found = []
    for ref in refs:
        check_reference(ref)
        try:
            parsed = project.parser.parse(target or ref)
        except UserError as e:
            raise UserError(f"{ref}: {e.message}", value=e.value, allowed=e.allowed,
                            hint="name its target with --target TAG when the image's tag is not a runner tag") from None
        t = project.target(target or ref)
        wanted = (platform or (parsed.platform if not target else ""),)
        platforms = t.platforms if wanted == ("",) else wanted
        for p in platforms:
            if p not in t.platforms:
                raise UserError(f"{t.tag} is not built for this platform", value=p, allowed=t.platforms)
        found.append(Subject(ref, t.tag, tuple(platforms)))
    return found


async def smoke_existing(project: Project, subject: Subject, engine: Any, pack: Path, gpu: bool = False,
                         memory: SmokeMemory | None = None) -> list[Built]:
    """Each platform of one existing image, smoke-tested like a fresh build of its target."""
    results = []
    for platform in subject.platforms:
        leaf = Leaf(project.target(subject.tag), platform, project.leaf_stage(subject.tag, platform))
        b = Built(leaf)
        try:
            b.handle, b.image_id = await engine.existing(subject.ref, platform)
        except Exception as e:  # noqa: BLE001 - a missing image fails this one only
            b.error = describe(e)
        if not b.error:
            b.checks = await smoke(engine, b.handle, b.image_id, leaf, pack, gpu, memory)
        results.append(b)
    return results
