"""The `Release` object both faces call: a project, the selection and its targets, the registry it
publishes to and the report it writes. Its plan and CI jobs are computed here; its runs load what they
need when they start (runner.flow.local on the Docker daemon, runner.flow.registry_ops on a registry,
runner.flow.on_dagger on the Dagger engine), so listing or planning loads no engine and no registry client.

Everything that can be checked is checked before the first change (report path, names, credentials)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.compose.jobs import JobPlan, ci_jobs
from runner.compose.plan import Plan, make_plan
from runner.flow.credentials import Credentials
from runner.flow.options import BuildOptions, Built
from runner.model.errors import UserError
from runner.model.files import check_writable, write_atomic
from runner.model.targets import Selection

if TYPE_CHECKING:
    from runner.flow.registry_access import RegistryAccess
    from runner.flow.registry_ops import Removed
    from runner.model.catalog import CatalogFile
    from runner.release.ci_job import Outcome
    from runner.release.publish import Repository


@dataclass
class Release:
    """One release run's subject: the project, the selection and its targets, where it publishes
    (None: nowhere), where the JSON report goes, and the account (read once, by the face's naming)."""

    project: Any
    selection: Selection = field(default_factory=Selection)
    targets: list = field(default_factory=list)
    registry: RegistryAccess | None = None
    report: Path | None = None
    credentials: Credentials = field(default_factory=Credentials)

    def __post_init__(self) -> None:
        if self.report is not None:
            check_writable(self.report, "report file")

    @cached_property
    def plan(self) -> Plan:
        """The stage plan of the selected targets: each distinct stage once, shared across targets."""
        return make_plan(self.targets, self.project.recipes)

    @cached_property
    def jobs(self) -> JobPlan:
        """The CI jobs of the plan: one per distinct stage, in waves."""
        return ci_jobs(self.plan)

    def repository(self) -> Repository:
        """The image repository, every part of its name checked."""
        if self.registry is None:
            raise UserError("no registry given: give --registry")
        return self.registry.repository_of(self.project)

    def write_report(self, result: dict) -> None:
        if self.report is not None:
            write_atomic(self.report, json.dumps(result, indent=1), "report file")

    # runs on the local Docker daemon (the engine loads when a run starts)

    async def build(self, o: BuildOptions, publish: bool = False, advance_bar=None) -> Built:
        """Build every selected target, smoke-test each image and, with `publish`, push what passed."""
        from runner.flow import local

        return await local.build(self, o, publish, advance_bar)

    async def smoke(self, images: list[str], target: str, platform: str, gpu: bool, recall: bool = True) -> Built:
        """Smoke-test existing images with the checks a build of their target gets."""
        from runner.flow import local

        return await local.smoke(self, images, target, platform, gpu, recall)

    async def job(self, key: str, o: BuildOptions) -> tuple[dict, Outcome]:
        """One CI job, planned in the selection its matrix emitted, so it builds nothing else."""
        from runner.flow import local

        return await local.job(self, key, o)

    async def rehearse(self, platform: str, keep: bool, progress, say, cover: bool = False) -> dict:
        """Build the selection here as the release would, with the declared substitutions; the report."""
        from runner.flow import rehearsal

        return await rehearsal.rehearse(self, platform, keep, progress, say, cover)

    # the registry steps (the registry client loads when one starts)

    def catalog(self, path: Path | None, notify) -> CatalogFile | None:
        """The catalog to keep in step, checked before anything changes (None: no catalog)."""
        from runner.flow import registry_ops

        return registry_ops.catalog_file(path, notify)

    async def merge(self, run: str) -> tuple[list, list[str]]:
        """-dev indexes from the single-arch images the run recorded as tested: (publications, notes)."""
        from runner.flow import registry_ops

        return await registry_ops.merge(self, run)

    async def promote(self, book: CatalogFile | None, run: str, skip_missing: bool, reason: str = "",
                      history: bool = True) -> list:
        """Each target's final tag pointed at its tested -dev index; the catalog kept in step."""
        from runner.flow import registry_ops

        return await registry_ops.promote(self, book, run, skip_missing, reason, history)

    async def discard(self, book: CatalogFile | None, history: bool = True) -> Removed:
        """Every tag of the selected targets deleted, with their artifacts."""
        from runner.flow import registry_ops

        return await registry_ops.discard(self, book, history)

    async def prune(self, book: CatalogFile | None, intermediates: bool, history: bool = True) -> Removed:
        """Runner tags the matrix no longer has deleted (and, with `intermediates`, promoted targets' -dev tags)."""
        from runner.flow import registry_ops

        return await registry_ops.prune(self, book, intermediates, history)

    async def run_report(self, run: str) -> list:
        """Each selected target's state in the registry and the run, as the release report's rows."""
        from runner.flow import registry_ops

        return await registry_ops.run_report(self, run)
