"""The release flow on the Dagger engine (runner.engines.dagger), for the Dagger face: builds of a
selection, a CI job, a publish of built images, smoke tests of existing images and single stages.
The face hands in Dagger objects (source files, secrets) and gets plain results or containers back;
the registry account is read once, here, from the secret the face names."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from runner.engines.dagger import DaggerBuilder, StageContainers
from runner.flow.credentials import Credentials
from runner.flow.registry_access import CacheAccess, RegistryAccess
from runner.flow.release import Release
from runner.model.errors import Failed, UserError
from runner.model.targets import Selection
from runner.flow.official_lock import require_pinned
from runner.release import pipeline, publish as releases
from runner.release.attest import Attester, Carrier
from runner.release.ci_job import find_job, run_job as run_ci_job
from runner.release.existing import smoke_existing, subjects
from runner.release.run_records import RunRecords, check_run
from runner.release.signing import KeylessSigner, KeySigner
from runner.ui.selection import publication_lines
from runner.verify.smoke import CheckResult


@dataclass
class Signing:
    """Who signs what publish attaches: a key, or Sigstore keyless (a token, or GitHub's token service)."""

    key: Any = None
    token: Any = None
    request_token: Any = None
    request_url: str = ""


async def attester_for(signing: Signing, builder: DaggerBuilder, build_info: dict[str, str]):
    """The attester of a publish; without a signer, it only carries what the members already have."""
    if signing.key is not None and (signing.token is not None or signing.request_token is not None):
        raise UserError("sign with a key or keyless, not both")
    signer = None
    if signing.key is not None:
        signer = KeySigner((await signing.key.plaintext()).encode(), "the signing key secret")
    elif signing.token is not None:
        signer = KeylessSigner(await signing.token.plaintext())
    elif signing.request_token is not None:
        signer = KeylessSigner("", signing.request_url, await signing.request_token.plaintext())
    if signer is None:
        return Carrier(notes=["no SBOM or provenance attached: no signer (a signing key or a Sigstore identity)"])
    return Attester(signer=signer, engine=builder, build_info=build_info)


async def access(address: str, username: str, password: Any, insecure: bool = False, namespace: str = "",
                 repository: str = "") -> RegistryAccess:
    """A registry and its account, the password read once from the Dagger secret."""
    return RegistryAccess(address, await Credentials.from_secret(username, password), namespace, repository, insecure)


async def build(project, selection: Selection, concurrency: int, gpu: bool,
                build_info: dict[str, str]) -> list[pipeline.Built]:
    """Plan the selection, build each distinct stage once, smoke-test every image."""
    plan = Release(project, selection, project.select(selection)).plan
    builder = DaggerBuilder(StageContainers(build_info, project.mirror_map()))
    return await pipeline.build_all(plan, builder, project.pack_path, concurrency, gpu=gpu)


def rebuilt_records(project, selection: Selection, images: list[tuple[str, str, Any, dict]]) -> list[pipeline.Built]:
    """The pipeline's records of built images, (tag, platform, container, report) each, found by tag
    and platform in the plan of the selection they were built in."""
    leaves = {(leaf.target.tag, leaf.platform): leaf
              for leaf in Release(project, selection, project.select(selection)).plan.leaves}
    built = []
    for tag, platform, container, r in images:
        b = pipeline.Built(leaves[(tag, platform)], container, seconds=r["build_seconds"], error=r["error"])
        b.checks = [CheckResult(**c) for c in r["smoke"]["checks"]]
        built.append(b)
    return built


async def publish(project, built: list[pipeline.Built], to: RegistryAccess, signing: Signing,
                  build_info: dict[str, str], single_arch: bool, run: str) -> str:
    """Push single-arch images, then each tag's -dev index when every platform passed; the lines that
    say what happened, or a Failed error carrying them when a tag was not fully published."""
    if single_arch or run:
        check_run(run)
    require_pinned(project, [b.leaf.target for b in built])  # the digest is what a release builds from
    repo = to.repository_of(project)
    builder = DaggerBuilder(StageContainers(), to.address, to.credentials.username, to.credentials.handle)
    attester = await attester_for(signing, builder, build_info)
    async with to.client() as reg:
        await reg.login()
        records = RunRecords(reg, repo.runs_path, run) if run else None
        pubs = await releases.publish(built, builder, reg, repo, {t.tag: t.platforms for t in project.targets},
                                      index=not single_arch, attest=attester, records=records)
    text = "\n".join([*publication_lines(pubs), *attester.notes])
    if any(p.skipped for p in pubs) or (not single_arch and any(p.note for p in pubs)):
        raise Failed(text)
    return text


async def smoke(project, images: list[str], target: str, platform: str, registry: str, username: str, password: Any,
                gpu: bool) -> list[pipeline.Built]:
    """Existing images smoke-tested with the checks a build of their target gets (the engine logs in
    with the secret itself, for private images)."""
    builder = DaggerBuilder(StageContainers(), registry, username, password)
    found = []
    for subject in subjects(project, images, target, platform):
        found += await smoke_existing(project, subject, builder, project.pack_path, gpu)
    return found


def stage_container(project, tag: str, platform: str, kind: str, build_info: dict[str, str]):
    """One stage (base, runtime or service) of a target on one platform, as a container."""
    leaf = project.leaf_stage(tag, platform)
    stage = next(s for s in reversed(leaf.chain()) if s.kind == kind)
    return StageContainers(build_info, project.mirror_map()).container(stage)


async def job(project, key: str, selection: Selection, cache_ref: str, to: RegistryAccess, run: str, dry_run: bool,
              emulate: bool, build_info: dict[str, str], signing: Signing = Signing()) -> dict:
    """One CI job on the engine, planned in the selection its matrix emitted (so it builds nothing
    else): its stage from the build cache, the shared stages it builds pushed there, a target's image
    smoke-tested and (unless a dry run) pushed single-arch with its SBOM and provenance, and recorded."""
    ci = find_job(project, selection, key)
    publish = ci.leaf is not None and not dry_run
    has_password = to.credentials.handle is not None
    if publish and not (to.address and has_password):
        raise UserError("a target's job pushes its image and records it for the run: give --registry, --username, "
                        "--password and --run (or --dry-run, which writes nothing)")
    if not dry_run and not has_password:
        raise UserError("a job that is not a dry run pushes to the build cache: give --username and --password")
    if publish:
        check_run(run)
    if publish and ci.leaf is not None:
        require_pinned(project, [ci.leaf.target])  # the digest is what a release builds from
    cache_access = CacheAccess.parse(cache_ref, to.credentials) if has_password else None
    host = cache_ref.partition("/")[0]
    async with AsyncExitStack() as stack:
        cache = reg = records = repo = None
        if cache_access is not None:  # a dry run without credentials reads no build cache
            cache_reg = await stack.enter_async_context(cache_access.client())
            await cache_reg.login()
            cache = ci.cache(cache_reg, cache_access.path, dry_run)
        if publish:
            reg = await stack.enter_async_context(to.client())
            await reg.login()
            repo = to.repository_of(project)
            records = RunRecords(reg, repo.runs_path, run)
        builder = DaggerBuilder(StageContainers(build_info, project.mirror_map()), to.address or host,
                                to.credentials.username, to.credentials.handle, cache)
        attester = await attester_for(signing, builder, build_info) if publish else None
        out = await run_ci_job(ci, builder, project.pack_path, reg, repo, records, emulate=emulate, attest=attester)
    if out.failed:
        raise Failed("\n".join(out.problems()))
    return out.as_dict(ci, cache, run, dry_run)
