"""The `Release` object both faces call: a project, the selection's targets, the registry it
publishes to and the report it writes, with build, publish, smoke and CI-job runs on the local Docker
daemon (BuildKit). The registry operations (merge, promote, discard, prune) are in runner.flow.registry_ops;
the Dagger engine's runs in runner.flow.on_dagger.

Everything that can be checked is checked before the first change (report path, names, credentials)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner.compose.jobs import ci_jobs
from runner.compose.plan import Plan, make_plan
from runner.engines.build_records import BuildRecords
from runner.engines.docker import Docker, DockerBuilder
from runner.flow.credentials import Credentials
from runner.flow.registry_access import CacheAccess, RegistryAccess
from runner.model.errors import UserError
from runner.model.files import check_writable, write_atomic
from runner.model.targets import Selection
from runner.release import pipeline, publish as releases
from runner.release.attest import Attester, Carrier
from runner.release.build_cache import BuildCache
from runner.release.ci_job import Outcome, find_job, run_job
from runner.release.existing import smoke_existing, subjects
from runner.release.provenance import build_info
from runner.release.report import report
from runner.release.run_records import RunRecords
from runner.release.signing import signer_from
from runner.release.smoke_memory import SmokeMemory


@dataclass
class BuildOptions:
    """How a local build runs (the CLI's options of the same names)."""

    concurrency: int = 2
    gpu: bool = False
    no_smoke_cache: bool = False
    reproducible: bool = False
    build_cache: str = ""
    single_arch: bool = False
    run: str = ""
    source_url: str = ""
    revision: str = ""
    sign_key: str | None = None
    keyless: bool = False
    emulate: bool = False
    dry_run: bool = False


@dataclass
class Built:
    """What a build (and publish) did: the report, the images, what was published."""

    result: dict
    built: list = field(default_factory=list)
    pubs: list = field(default_factory=list)


def unattested(attester) -> str:
    return ("nothing attached" if getattr(attester, "signer", None) else
            "no SBOM or provenance attached: no signer (--sign-key, $RUNNER_SIGNING_KEY or --keyless)")


@dataclass
class Release:
    """One release run's subject: the project, the selection and its targets, where it publishes
    (None: nowhere) and where the JSON report goes."""

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
    def jobs(self):
        """The CI jobs of the plan: one per distinct stage, in waves."""
        return ci_jobs(self.plan)

    def repository(self):
        if self.registry is None:
            raise UserError("no registry given: give --registry")
        return self.registry.repository_of(self.project)

    def records(self, reg, repo, run: str) -> RunRecords | None:
        """The run's records (None without a run)."""
        return RunRecords(reg, repo.runs_path, run) if run else None

    def attester(self, o: BuildOptions, publish: bool, info: dict[str, str]):
        """What publish attaches: SBOM and signed provenance with a signer, else only what the members
        carry (checked before any build: a bad key fails the command at once)."""
        signer = signer_from(o.sign_key, o.keyless) if publish else None
        return Attester(signer=signer, build_info=info) if signer is not None else Carrier()

    def write_report(self, result: dict) -> None:
        if self.report is not None:
            write_atomic(self.report, json.dumps(result, indent=1), "report file")

    async def build(self, o: BuildOptions, publish: bool = False, advance_bar=None) -> Built:
        """Build every selected target, smoke-test each image and, with `publish`, push what passed."""
        repo = self.repository() if publish else None
        if publish:
            self.credentials.required()
        if publish and o.single_arch and not o.run:
            raise UserError("publish --single-arch pushes legs for a later `merge --run ID`: give --run ID so merge "
                            "indexes exactly what this run tested")
        info = build_info(self.project.matrix_path.parent, o.source_url, o.revision)
        attester = self.attester(o, publish, info)
        plan = self.plan
        memory = SmokeMemory(recall=not o.no_smoke_cache)
        cache = access = None
        if o.build_cache:
            access = CacheAccess.parse(o.build_cache, self.credentials)
            cache = BuildCache(access.client(), access.path, self.jobs.shared())
        pubs: list = []
        retries: list = []
        password = self.credentials.password if publish else ""
        with Docker(secrets=[password, access.credentials.password if access else ""]) as docker:
            await docker.require_engine()  # said once, before any login or build
            builder = DockerBuilder(docker, info, self.project.pack_path, mirrors=self.project.mirror_map(),
                                    build_cache=cache, records=BuildRecords(), reproducible=o.reproducible)
            try:
                async with AsyncExitStack() as stack:
                    if publish:
                        async with self.registry.client() as reg:
                            await reg.login()  # before hours of building, not after
                        await docker.login(*self.registry.docker_login())
                    if cache is not None:
                        await stack.enter_async_context(cache.registry)
                        await cache.registry.login()
                        if access.host != (self.registry.address if self.registry else None):
                            await docker.login(*access.docker_login())
                    with advance_bar(len(plan.leaves)) as advance:
                        built = await pipeline.build_all(plan, builder, self.project.pack_path, o.concurrency, advance,
                                                         o.gpu, memory)
                    if publish:
                        async with self.registry.client() as reg:
                            attester.engine = builder
                            pubs = await releases.publish(
                                built, builder, reg, repo, {t.tag: t.platforms for t in self.project.targets},
                                index=not o.single_arch, attest=attester, records=self.records(reg, repo, o.run))
                            retries = reg.retries + builder.retries
            finally:
                builder.close()
        result = report(built, pubs)
        result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached,
                           "images_unchanged": builder.counts.images_unchanged, "distinct_stages": plan.distinct_stages}
        if cache is not None:
            result["build_cache"] = {"found": cache.found, "published": cache.published}
        result["registry_retries"] = retries
        if publish:
            result["attestations"] = attester.notes or [unattested(attester)]
        self.write_report(result)
        return Built(result, built, pubs)

    async def smoke(self, images: list[str], target: str, platform: str, gpu: bool, recall: bool = True) -> Built:
        """Smoke-test existing images with the checks a build of their target gets."""
        subjects(self.project, images, target, platform)  # every name checked before the daemon is asked
        memory = SmokeMemory(recall=recall)
        built = []
        with Docker() as docker:
            await docker.require_engine()
            builder = DockerBuilder(docker, {}, self.project.pack_path)
            try:
                for ref in images:
                    local = "" if platform else await builder.local_platform(ref)
                    (subject,) = subjects(self.project, [ref], target, platform or local)
                    built += await smoke_existing(self.project, subject, builder, self.project.pack_path, gpu, memory)
            finally:
                builder.close()
        result = report(built)
        self.write_report(result)
        return Built(result, built)

    async def job(self, key: str, o: BuildOptions) -> tuple[dict, Outcome]:
        """One CI job, planned in the selection its matrix emitted (so it builds nothing else): its stage
        from the build cache, the shared stages it makes pushed there; a target's job also smoke-tests
        the image and pushes its single-arch tag, recording the result for the run."""
        ci = find_job(self.project, self.selection, key)
        if not o.build_cache:
            raise UserError("a CI job needs --build-cache HOST/NAMESPACE/REPOSITORY (where the jobs hand stages on)")
        publish = ci.leaf is not None and not o.dry_run
        if publish and not (self.registry and self.registry.address and o.run):
            raise UserError("a target's job pushes its image and records it for the run: give --registry and --run "
                            "(or --dry-run, which writes nothing)")
        if not o.dry_run:
            self.credentials.required(" (a dry run needs none)")
        cache = access = None
        notes = []
        if self.credentials.password:
            access = CacheAccess.parse(o.build_cache, self.credentials)
            cache = ci.cache(access.client(), access.path, o.dry_run)
        else:
            notes.append("a dry run without registry credentials reads no build cache: every stage is built here")
        repo = self.repository() if publish else None
        info = build_info(self.project.matrix_path.parent, o.source_url, o.revision)
        attester = self.attester(o, publish, info)
        with Docker(secrets=[self.credentials.password]) as docker:
            await docker.require_engine()  # said once, before the build cache is asked
            builder = DockerBuilder(docker, info, self.project.pack_path, mirrors=self.project.mirror_map(),
                                    build_cache=cache, reproducible=o.reproducible)
            try:
                async with AsyncExitStack() as stack:
                    if cache is not None:
                        await stack.enter_async_context(cache.registry)
                        await cache.registry.login()
                        await docker.login(*access.docker_login())
                    reg = records = None
                    if publish:
                        reg = await stack.enter_async_context(self.registry.client())
                        await reg.login()
                        if self.registry.address != access.host:
                            await docker.login(*self.registry.docker_login())
                        records = RunRecords(reg, repo.runs_path, o.run)
                        attester.engine = builder
                    memory = SmokeMemory(recall=not o.no_smoke_cache)
                    out = await run_job(ci, builder, self.project.pack_path, reg, repo, records, o.gpu, memory,
                                        o.emulate, attest=attester if publish else None)
            finally:
                builder.close()
        result = out.as_dict(ci, cache, o.run, o.dry_run)
        result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached}
        result["notes"] = notes
        return result, out
