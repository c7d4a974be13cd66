"""The registry steps of a `Release` (called through its methods): merge single-arch legs into -dev indexes, promote
-dev indexes to final tags, discard and prune tags, and the run's report, each logging in before it
changes anything and keeping the catalog (when given) in step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.compose.catalog_records import catalog_records
from runner.model.catalog import CatalogFile
from runner.release import ledger, publish as releases, referrers
from runner.release.attest import Carrier
from runner.release.run_records import RunRecords
from runner.release.run_report import run_rows

if TYPE_CHECKING:
    from runner.flow.release import Release


@dataclass
class Removed:
    deleted: list[str]
    artifacts_deleted: list[str]
    registry_retries: list = field(default_factory=list)


def _records(reg, repo, run: str) -> RunRecords | None:
    return RunRecords(reg, repo.runs_path, run) if run else None


def catalog_file(path: Path | None, notify: Callable[[str], None]) -> CatalogFile | None:
    """The catalog to keep in step, checked before anything changes (None: no catalog)."""
    if path is None:
        return None
    book = CatalogFile(path, notify=notify)
    book.check()
    return book


async def merge(release: Release, run: str) -> tuple[list, list[str]]:
    """-dev indexes from the single-arch digests the run recorded as tested: (publications, notes)."""
    repo = release.repository()
    carrier = Carrier()
    async with release.registry.client() as reg:
        await reg.login()
        pubs = await releases.merge(release.targets, reg, repo, _records(reg, repo, run), attest=carrier)
    return pubs, carrier.notes


async def promote(release: Release, book: CatalogFile | None, run: str, skip_missing: bool, reason: str = "",
                  history: bool = True) -> list:
    """Each target's final tag pointed at its tested -dev index; the catalog (and with `history`, the
    tag history beside it) updated."""
    repo = release.repository()
    project = release.project
    async with release.registry.client() as reg:
        await reg.login()
        results = await releases.promote(release.targets, reg, repo, book,
                                         lambda ts: catalog_records(project, ts, repo.catalog_image),
                                         skip_missing=skip_missing, run=_records(reg, repo, run))
        if book is not None and history:
            await ledger.record_promotions(book, reg, repo, results, ledger.reasons(release.targets, reason))
    return results


async def discard(release: Release, book: CatalogFile | None, history: bool = True) -> Removed:
    """Every tag of the selected targets deleted (and their artifacts); the catalog records why."""
    repo = release.repository()
    async with release.registry.client() as reg:
        await reg.login()
        done, swept = await referrers.sweeping(reg, repo.path,
                                               lambda: releases.discard(release.targets, reg, repo, book))
    if book is not None and history:
        ledger.record_removals(book, [repo.catalog_image(t.tag) for t in release.targets], "discarded")
    return Removed(done, swept, reg.retries)


async def prune(release: Release, book: CatalogFile | None, intermediates: bool, history: bool = True) -> Removed:
    """Runner tags the matrix no longer has deleted (and, with `intermediates`, promoted targets' -dev tags)."""
    repo = release.repository()
    project = release.project
    async with release.registry.client() as reg:
        await reg.login()
        done, swept = await referrers.sweeping(reg, repo.path, lambda: releases.prune(
            reg, repo, {t.tag for t in project.targets}, project.parser.parse, book, intermediates))
    if book is not None and history:
        ledger.record_removals(book, [repo.catalog_image(t) for t in done], "pruned")
    return Removed(done, swept, reg.retries)


async def run_report(release: Release, run: str) -> list:
    """The rows of the release report: each selected target's state in the registry (and the run)."""
    repo = release.repository()
    async with release.registry.client() as reg:
        await reg.login()
        return await run_rows(release.targets, reg, repo, _records(reg, repo, run))
