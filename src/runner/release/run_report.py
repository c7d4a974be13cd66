"""The report of one release run, read back from the registry: per target and platform whether the
run built and tested it (and if not, why), the digest its job pushed, size and time, the -dev index
its merge wrote and whether the final tag points at that index (promoted). runner.ui.release_report
renders it for a GitHub step summary or a GitLab test report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from runner.model.naming import format_tag
from runner.model.targets import Target

if TYPE_CHECKING:
    from runner.release.publish import Repository
    from runner.release.registry import Registry
    from runner.release.run_records import RunRecords


@dataclass
class Row:
    """One target on one platform in one run."""

    tag: str
    platform: str
    result: str  # passed, failed, not tested
    digest: str = ""
    size: int = 0
    seconds: float = 0.0  # build and smoke tests
    why: str = ""
    dev: str = ""  # the -dev index this run's merge wrote ("" when held back)
    promoted: bool = False  # the final tag is this run's index

    def as_dict(self) -> dict:
        return asdict(self)


async def run_rows(targets: Sequence[Target], registry: Registry, repo: Repository, records: RunRecords) -> list[Row]:
    """Every target and platform of the selection, as the run's records and the registry have them."""
    rows = []
    for t in targets:
        index = await records.index(t.tag)
        final = await registry.digest(repo.path, t.tag) if index else None
        for platform in t.platforms:
            leg = await records.leg(t.tag, platform)
            if leg is None:
                row = Row(t.tag, platform, "not tested", why=f"no job of run {records.run} recorded "
                          f"{format_tag(t, platform)}: it failed before it could say why, or has not run")
            else:
                row = Row(t.tag, platform, "passed" if leg.passed else "failed", leg.digest, leg.size,
                          round(leg.build_seconds + leg.smoke_seconds, 1), leg.reason)
            if index is not None:
                row.dev, row.promoted = index.digest, final == index.digest
            elif row.result == "passed":
                row.why = "held back: another platform of this tag did not pass in this run"
            rows.append(row)
    return rows
