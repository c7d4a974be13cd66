"""The release flow's runs on the local Docker daemon (BuildKit): builds, publishes, smoke tests of
existing images and CI jobs of a `Release`. Loaded only when a run starts (`runner plan` and
`runner matrix` never load an engine)."""

from __future__ import annotations

from contextlib import AsyncExitStack, nullcontext
from typing import TYPE_CHECKING

from runner.engines.build_records import BuildRecords
from runner.engines.docker import Docker, DockerBuilder
from runner.flow.registry_access import CacheAccess
from runner.flow.options import BuildOptions, Built
from runner.model.errors import UserError
from runner.flow.official_lock import require_pinned
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

if TYPE_CHECKING:
    from runner.flow.release import Release


def records_of(reg, repo, run: str) -> RunRecords | None:
    """The run's records (None without a run)."""
    return RunRecords(reg, repo.runs_path, run) if run else None


def attester_for(o: BuildOptions, publish: bool, info: dict[str, str]):
    """What publish attaches: SBOM and signed provenance with a signer, else only what the members
    carry (checked before any build: a bad key fails the command at once)."""
    signer = signer_from(o.sign_key, o.keyless) if publish else None
    return Attester(signer=signer, build_info=info) if signer is not None else Carrier()


def unattested(attester) -> str:
    return ("nothing attached" if getattr(attester, "signer", None) else
            "no SBOM or provenance attached: no signer (--sign-key, $RUNNER_SIGNING_KEY or --keyless)")


async def build(release: Release, o: BuildOptions, publish: bool = False, advance_bar=None) -> Built:
    """Build every selected target, smoke-test each image and, with `publish`, push what passed;
    `advance_bar(total)` gives the progress callback (default: none)."""
    advance_bar = advance_bar or (lambda total: nullcontext(lambda *_: None))
    repo = release.repository() if publish else None
    if publish:
        release.credentials.required()
    if publish and o.single_arch and not o.run:
        raise UserError("publish --single-arch pushes legs for a later `merge --run ID`: give --run ID so merge "
                        "indexes exactly what this run tested")
    info = build_info(release.project.matrix_path.parent, o.source_url, o.revision)
    attester = attester_for(o, publish, info)
    plan = release.plan
    memory = SmokeMemory(recall=not o.no_smoke_cache)
    cache = access = None
    if o.build_cache:
        access = CacheAccess.parse(o.build_cache, release.credentials)
        cache = BuildCache(access.client(), access.path, release.jobs.shared())
    pubs: list = []
    retries: list = []
    password = release.credentials.password if publish else ""
    with Docker(secrets=[password, access.credentials.password if access else ""]) as docker:
        await docker.require_engine()  # said once, before any login or build
        builder = DockerBuilder(docker, info, release.project.pack_path, mirrors=release.project.mirror_map(),
                                build_cache=cache, records=BuildRecords(), reproducible=o.reproducible)
        try:
            async with AsyncExitStack() as stack:
                if publish:
                    async with release.registry.client() as reg:
                        await reg.login()  # before hours of building, not after
                    await docker.login(*release.registry.docker_login())
                    require_pinned(release.project, release.targets)  # the digest is what a release builds from
                if cache is not None:
                    await stack.enter_async_context(cache.registry)
                    await cache.registry.login()
                    if access.host != (release.registry.address if release.registry else None):
                        await docker.login(*access.docker_login())
                with advance_bar(len(plan.leaves)) as advance:
                    built = await pipeline.build_all(plan, builder, release.project.pack_path, o.concurrency, advance,
                                                     o.gpu, memory)
                if publish:
                    async with release.registry.client() as reg:
                        attester.engine = builder
                        pubs = await releases.publish(
                            built, builder, reg, repo, {t.tag: t.platforms for t in release.project.targets},
                            index=not o.single_arch, attest=attester, records=records_of(reg, repo, o.run))
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
    release.write_report(result)
    return Built(result, built, pubs)

async def smoke(release: Release, images: list[str], target: str, platform: str, gpu: bool, recall: bool = True) -> Built:
    """Smoke-test existing images with the checks a build of their target gets."""
    subjects(release.project, images, target, platform)  # every name checked before the daemon is asked
    memory = SmokeMemory(recall=recall)
    built = []
    with Docker() as docker:
        await docker.require_engine()
        builder = DockerBuilder(docker, {}, release.project.pack_path)
        try:
            for ref in images:
                local = "" if platform else await builder.local_platform(ref)
                (subject,) = subjects(release.project, [ref], target, platform or local)
                built += await smoke_existing(release.project, subject, builder, release.project.pack_path, gpu, memory)
        finally:
            builder.close()
    result = report(built)
    release.write_report(result)
    return Built(result, built)

async def job(release: Release, key: str, o: BuildOptions) -> tuple[dict, Outcome]:
    """One CI job, planned in the selection its matrix emitted (so it builds nothing else): its stage
    from the build cache, the shared stages it makes pushed there; a target's job also smoke-tests
    the image and pushes its single-arch tag, recording the result for the run."""
    ci = find_job(release.project, release.selection, key)
    if not o.build_cache:
        raise UserError("a CI job needs --build-cache HOST/NAMESPACE/REPOSITORY (where the jobs hand stages on)")
    publish = ci.leaf is not None and not o.dry_run
    if publish and not (release.registry and release.registry.address and o.run):
        raise UserError("a target's job pushes its image and records it for the run: give --registry and --run "
                        "(or --dry-run, which writes nothing)")
    if publish and ci.leaf is not None:
        require_pinned(release.project, [ci.leaf.target])
    if not o.dry_run:
        release.credentials.required(" (a dry run needs none)")
    cache = access = None
    notes = []
    if release.credentials.password:
        access = CacheAccess.parse(o.build_cache, release.credentials)
        cache = ci.cache(access.client(), access.path, o.dry_run)
    else:
        notes.append("a dry run without registry credentials reads no build cache: every stage is built here")
    repo = release.repository() if publish else None
    info = build_info(release.project.matrix_path.parent, o.source_url, o.revision)
    attester = attester_for(o, publish, info)
    with Docker(secrets=[release.credentials.password]) as docker:
        await docker.require_engine()  # said once, before the build cache is asked
        builder = DockerBuilder(docker, info, release.project.pack_path, mirrors=release.project.mirror_map(),
                                build_cache=cache, reproducible=o.reproducible)
        try:
            async with AsyncExitStack() as stack:
                if cache is not None:
                    await stack.enter_async_context(cache.registry)
                    await cache.registry.login()
                    await docker.login(*access.docker_login())
                reg = records = None
                if publish:
                    reg = await stack.enter_async_context(release.registry.client())
                    await reg.login()
                    if release.registry.address != access.host:
                        await docker.login(*release.registry.docker_login())
                    records = RunRecords(reg, repo.runs_path, o.run)
                    attester.engine = builder
                memory = SmokeMemory(recall=not o.no_smoke_cache)
                out = await run_job(ci, builder, release.project.pack_path, reg, repo, records, o.gpu, memory,
                                    o.emulate, attest=attester if publish else None)
        finally:
            builder.close()
    result = out.as_dict(ci, cache, o.run, o.dry_run)
    result["steps"] = {"executed": builder.counts.executed, "cached": builder.counts.cached}
    result["notes"] = notes
    return result, out
