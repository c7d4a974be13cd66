"""The release flow's rehearsal: the selection built here as the release would build it, with the
declared substitutions only (runner.rehearse), on the daemon a local run builds on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from runner.flow.daemon import require_engine
from runner.rehearse.cover import cover_targets
from runner.rehearse.run import Rehearsed, rehearse as run
from runner.rehearse.standin import rootfs_path
from runner.release.provenance import build_info

if TYPE_CHECKING:
    from runner.flow.release import Release


def on_platform(targets: list, platform: str) -> list:
    """The targets built for `platform`, each on that platform alone (all of them as they are without one)."""
    return [replace(t, platforms=(platform,)) for t in targets if platform in t.platforms] if platform else list(targets)


async def rehearse(release: Release, platform: str, keep: bool, progress: Callable[[Rehearsed], None],
                   say: Callable[[str], None], cover: bool = False) -> dict:
    """Rehearse the release's targets (on `platform` only, when given; with `cover`, only the fewest of
    them that run every distinct recipe script); the rehearsal report, also written to the release's
    report file."""
    targets = on_platform(release.targets, platform)
    if cover:
        targets, chosen = cover_targets(targets, release.project.recipes)
        say(chosen.describe())
    await require_engine()  # no engine is said alone, before anything is made
    for p in sorted({p for t in targets for p in t.platforms}):
        if p in ("linux/amd64", "linux/arm64") and not rootfs_path(p).exists():
            # a first rehearsal is quiet for minutes while debootstrap makes the stand-in's Debian base
            say(f"a vendor base that cannot be pulled gets a Debian stand-in: its {p} root file system is made "
                f"with debootstrap first (a few minutes, once per cache: {rootfs_path(p).parent})")
    result = await run(release.project, targets, build_info(release.project.matrix_path.parent, "", ""), keep,
                       progress)
    release.write_report(result)
    return result
