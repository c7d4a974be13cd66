"""The JSON report of a run: per target and platform, digest, size, build time and smoke results,
and what was published."""

from __future__ import annotations

from collections.abc import Sequence

from runner.release.pipeline import Built
from runner.release.publish import Publication


def report(built: Sequence[Built], publications: Sequence[Publication] = ()) -> dict:
    """JSON report: per target and platform, digest, size, build time and smoke results."""
    pubs = {p.tag: p for p in publications}
    return {
        "images": [b.report() for b in built],
        "published": [{"tag": p.tag, "dev": p.dev_ref, "digest": p.digest, "platforms": p.platforms, "skipped": p.skipped,
                       "error": p.error, "note": p.note, "pushed": p.pushed, "index_changed": p.index_changed} for p in pubs.values()],
        "passed": sum(b.passed for b in built), "failed": sum(not b.passed for b in built),
    }
