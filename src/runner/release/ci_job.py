"""One CI job of a release (runner.compose.jobs) on either engine.

A job is planned in the selection it was emitted from, so a stage the selection shares (an image
SGLang starts from, say) is built and handed on as a stage, never tested or pushed as the target it
is elsewhere in the matrix. It runs on an engine of its own platform, takes what the build cache
holds, stops when another job's stage it starts from is missing (that job failed), builds the rest and
hands the shared stages on. A target's job smoke-tests the image and, unless it is a dry run, pushes
its single-arch tag and records the result for the run (runner.release.run_records). A dry run reads
the build cache when it can, builds what is missing itself and writes nothing anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.compose.jobs import Job, JobPlan, ci_jobs
from runner.compose.plan import Leaf, Plan, make_plan
from runner.model.errors import UserError
from runner.model.targets import Selection
from runner.release import pipeline, publish as flow
from runner.release.build_cache import BuildCache
from runner.release.pipeline import BuildError, Built

if TYPE_CHECKING:
    from runner.compose.project import Project
    from runner.release.attest import Carrier
    from runner.release.registry import Registry
    from runner.release.run_records import RunRecords


@dataclass
class CiJob:
    """A job of the plan of its own selection."""

    project: Project
    selection: Selection
    plan: Plan
    jobs: JobPlan
    job: Job

    @property
    def leaf(self) -> Leaf | None:
        """The target and platform a target's job tests (None for a job that builds a shared stage)."""
        return next((x for x in self.plan.leaves if x.stage.key == self.job.key), None)

    def cache(self, registry: Registry, path: str, dry_run: bool) -> BuildCache:
        """The build cache as this job uses it: its inputs must be there (except in a dry run, which
        builds them itself and publishes nothing)."""
        inputs = {} if dry_run else {k: k for k in self.job.needs}
        return BuildCache(registry, path, self.jobs.shared(), inputs, read_only=dry_run)


def find_job(project: Project, selection: Selection, key: str) -> CiJob:
    """The job `key` of the plan of `selection` (what `matrix --format github|gitlab` emitted)."""
    plan = make_plan(project.select(selection), project.recipes)
    jobs = ci_jobs(plan)
    return CiJob(project, selection, plan, jobs, jobs.find(key))


def check_platform(ci: CiJob, native: str, emulate: bool = False) -> None:
    """A job runs on an engine of its own platform: emulation is slow and hides platform faults."""
    wanted = ci.job.root.platform
    if native != wanted and not emulate:
        raise UserError(f"job {ci.job.key[:16]} builds for {wanted}, but this engine runs {native or 'an unknown platform'}",
                        hint=f"run it on a {wanted} runner and engine (CI: the job's runner label and "
                             "DAGGER_ENGINE_* variable); --emulate builds under emulation anyway")


@dataclass
class Outcome:
    """What a job did: the images it tested, what it pushed, or why it stopped."""

    built: list[Built] = field(default_factory=list)
    pubs: list[flow.Publication] = field(default_factory=list)
    stopped: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.stopped) or any(not b.passed for b in self.built) or any(p.error for p in self.pubs)

    def problems(self) -> list[str]:
        """One line per failure, for stderr or an error."""
        lines = [f"{b.target.tag} on {b.platform}: {b.error or 'smoke checks failed: ' + b.why_not()}"
                 for b in self.built if not b.passed]
        lines += [f"{p.tag}: not pushed: {p.skipped}" for p in self.pubs if p.error]
        return lines + ([self.stopped] if self.stopped else [])

    def as_dict(self, ci: CiJob, cache: BuildCache | None, run: str, dry_run: bool) -> dict:
        return {"job": ci.job.as_dict(), "selection": ci.selection.to_json(), "run": run, "dry_run": dry_run,
                "from_cache": cache.found if cache else [], "published_to_cache": cache.published if cache else [],
                "images": [{"tag": b.target.tag, "platform": b.platform, "passed": b.passed, "error": b.error,
                            "digest": b.digest} for b in self.built],
                "pushed": [p.tag for p in self.pubs if not p.skipped], "stopped": self.stopped}


async def run_job(ci: CiJob, builder: Any, pack: Path, registry: Registry | None = None,
                  repo: flow.Repository | None = None, records: RunRecords | None = None, gpu: bool = False,
                  memory: pipeline.SmokeMemory | None = None, emulate: bool = False,
                  attest: Carrier | None = None) -> Outcome:
    """Build the job's stage on an engine of its platform; for a target's job, smoke-test its image
    and, given a registry, push its single-arch tag (with `attest`, its SBOM and provenance) and
    record the leg for the run (a leg that could not be built is recorded as failed, with the reason)."""
    out = Outcome()
    leaf = ci.leaf
    try:
        check_platform(ci, await builder.native_platform(), emulate)
        if leaf is None:
            await builder.build_stage(ci.job.root)
            return out
        one = make_plan([replace(leaf.target, platforms=(leaf.platform,))], ci.project.recipes)
        out.built = await pipeline.build_all(one, builder, pack, 1, None, gpu, memory)
        if registry is not None and repo is not None:
            out.pubs = await flow.publish(out.built, builder, registry, repo, _matrix_platforms(ci.project.targets),
                                          index=False, attest=attest, records=records, job=ci.job.key[:16])
    except BuildError as e:  # an input another job failed to publish, or the engine's own failure
        out.stopped = str(e)
        if leaf is not None and records is not None:
            from runner.release.run_records import LegRecord

            await records.put_leg(LegRecord(tag=leaf.target.tag, platform=leaf.platform, passed=False,
                                            reason=out.stopped[:1000], job=ci.job.key[:16]))
    return out


def _matrix_platforms(targets: Sequence) -> dict[str, tuple[str, ...]]:
    return {t.tag: t.platforms for t in targets}
