"""What `images` returns: every target and platform built and smoke-tested, each image with its own tag
and platform, to chain `summary`, `report`, `publish` or `tarballs` on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

import dagger
from dagger import Doc, dag, field, function, object_type

from runner.dagger import checkout
from runner.dagger.args import (Insecure, Namespace, OidcRequestToken, OidcRequestUrl, Password, Registry, Repository,
                                SigningKey, SigstoreToken, Username)
from runner.engines.dagger import DaggerBuilder, StageContainers
from runner.model.errors import Failed, UserError
from runner.release import pipeline, publish as flow
from runner.ui.selection import publication_lines, summary_lines
from runner.verify.smoke import CheckResult


@object_type
class BuiltImage:
    """One target on one platform: its image, when it built, and its build and smoke results."""

    tag: Annotated[str, Doc("multi-arch tag of the target")] = field()
    platform: Annotated[str, Doc("platform of this image")] = field()
    passed: Annotated[bool, Doc("built, and every smoke check passed")] = field()
    result: Annotated[str, Doc("build and smoke results (JSON)")] = field()
    container: Annotated[dagger.Container | None, Doc("the image; none when the build failed")] = field(default=None)


@object_type
class Build:
    """Images built and smoke-tested by `images`: chain summary, report, publish or tarballs."""

    source: Annotated[dagger.Directory, Doc("the project that was built")] = field()
    selection: Annotated[str, Doc("the selection that was built (JSON)")] = field()
    images: Annotated[list[BuiltImage], Doc("one image per target and platform")] = field()
    build_info: Annotated[str, Doc("OCI source, revision and created labels (JSON)")] = field(default="{}")

    @function
    def report(self) -> str:
        """JSON per target and platform: build time, error, and each smoke check's command, exit code,
        duration and output excerpt. Always returns, whatever failed."""
        return json.dumps({"images": [json.loads(i.result) for i in self.images],
                           "passed": sum(i.passed for i in self.images),
                           "failed": sum(not i.passed for i in self.images)}, indent=1)

    @function
    def summary(self) -> str:
        """One line per target and platform; ends with an error listing what failed, if anything did."""
        return summarize([json.loads(i.result) for i in self.images])

    @function
    def tarballs(self) -> dagger.Directory:
        """OCI tarballs of the images that built and passed, one per target and platform
        (`tarballs export --path out/`, or `tarballs -o out/`)."""
        out = dag.directory()
        for i in self.images:
            if i.passed and i.container is not None:
                out = out.with_file(f"{i.tag}-{i.platform.replace('/', '-')}.tar", i.container.as_tarball())
        return out

    @function(cache="never")
    async def publish(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "",
        repository: Repository = "",
        single_arch_only: Annotated[bool, Doc("push single-arch images only; a `merge` job writes the indexes")] = False,
        insecure: Insecure = False,
        signing_key: SigningKey = None,
        sigstore_token: SigstoreToken = None,
        oidc_request_token: OidcRequestToken = None,
        oidc_request_url: OidcRequestUrl = "",
    ) -> str:
        """Push single-arch images, then each tag's multi-arch -dev index from their digests when every
        platform of the matrix target passed; with a signer, each image gets its SBOM and signed
        provenance first. A tag with a failed platform pushes nothing; ends with an error listing every
        tag not fully published."""
        if not self.selection:
            raise UserError("these images were smoke-tested, not built here: promote their -dev tag, or build them")
        project = await checkout.load(self.source)
        repo = flow.Repository(registry, namespace or project.namespace, repository or project.repository)
        built = self.as_built(project)
        builder = DaggerBuilder(StageContainers(), registry, username, password)
        attester = await attester_for(Signing(signing_key, sigstore_token, oidc_request_token, oidc_request_url), builder,
                                      json.loads(self.build_info))
        async with await checkout.registry(registry, username, password, insecure) as reg:
            await reg.login()
            pubs = await flow.publish(built, builder, reg, repo, {t.tag: t.platforms for t in project.targets},
                                      index=not single_arch_only, attest=attester)
        text = "\n".join([*publication_lines(pubs), *attester.notes])
        if any(p.skipped for p in pubs) or (not single_arch_only and any(p.note for p in pubs)):
            raise Failed(text)
        return text

    def as_built(self, project) -> list[pipeline.Built]:
        """The pipeline's records of these images, each found by its own tag and platform."""
        from runner.compose.plan import make_plan
        from runner.ui.selection import selection_from_json

        leaves = {(leaf.target.tag, leaf.platform): leaf
                  for leaf in make_plan(project.select(selection_from_json(self.selection)), project.recipes).leaves}
        built = []
        for i in self.images:
            r = json.loads(i.result)
            b = pipeline.Built(leaves[(i.tag, i.platform)], i.container, seconds=r["build_seconds"], error=r["error"])
            b.checks = [CheckResult(**c) for c in r["smoke"]["checks"]]
            built.append(b)
        return built


@dataclass
class Signing:
    """Who signs what publish attaches: a key, or Sigstore keyless (a token, or GitHub's token service)."""

    key: dagger.Secret | None = None
    token: dagger.Secret | None = None
    request_token: dagger.Secret | None = None
    request_url: str = ""


async def attester_for(signing: Signing, builder: DaggerBuilder, build_info: dict[str, str]):
    """The attester of a publish; without a signer, it only carries what the members already have."""
    from runner.release.attest import Attester, Carrier
    from runner.release.signing import KeylessSigner, KeySigner

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


def summarize(results: list[dict]) -> str:
    """The summary text; a Failed error carrying it when anything failed (so `dagger call` exits non-zero)."""
    lines = summary_lines({"images": results})
    if any(not r["smoke"]["passed"] for r in results):
        lines.append("failed tags will not be published: see `report` for each check's output, fix the recipe "
                     "or smoke spec in pack/, and build again")
        raise Failed("\n".join(lines))
    return "\n".join(lines)


async def run_images(source: dagger.Directory, selection, concurrency: int, gpu: bool,
                     build_info: dict[str, str]) -> Build:
    """Plan the selection, build each distinct stage once, smoke-test every image."""
    from runner.compose.plan import make_plan
    from runner.ui.selection import selection_json

    project = await checkout.load(source)
    plan = make_plan(project.select(selection), project.recipes)
    builder = DaggerBuilder(StageContainers(build_info, project.mirror_map()))
    built = await pipeline.build_all(plan, builder, project.pack_path, concurrency, gpu=gpu)
    images = [BuiltImage(tag=b.target.tag, platform=b.platform, passed=b.passed, result=json.dumps(b.report()),
                         container=b.handle if not b.error else None) for b in built]
    return Build(source=source, selection=selection_json(selection), images=images, build_info=json.dumps(build_info))


async def run_job(source: dagger.Directory, key: str, cache_ref: str, username: str, password: dagger.Secret,
                  publish: bool, namespace: str, repository: str, build_info: dict[str, str],
                  signing: Signing = Signing()) -> str:
    """One CI job on the engine (see runner.compose.jobs): its stage from the build cache, the shared
    stages it builds pushed there, a target's image smoke-tested (and pushed single-arch)."""
    from dataclasses import replace

    from runner.compose.jobs import ci_jobs
    from runner.compose.plan import make_plan
    from runner.release.build_cache import BuildCache

    project = await checkout.load(source)
    plan = make_plan(project.targets, project.recipes)
    jobs = ci_jobs(plan)
    the_job = jobs.find(key)
    host, _, path = cache_ref.partition("/")
    async with await checkout.registry(host, username, password, False) as reg:
        await reg.login()
        cache = BuildCache(reg, path, jobs.shared())
        builder = DaggerBuilder(StageContainers(build_info, project.mirror_map()), host, username, password, cache)
        if not the_job.tag:
            await builder.build_stage(the_job.root)
            return json.dumps({"job": the_job.as_dict(), "from_cache": cache.found, "published": cache.published})
        leaf = next(x for x in plan.leaves if x.stage.key == the_job.key)
        one = make_plan([replace(leaf.target, platforms=(leaf.platform,))], project.recipes)
        built = await pipeline.build_all(one, builder, project.pack_path, 1)
        pubs = []
        if publish:
            repo = flow.Repository(host, namespace or project.namespace, repository or project.repository)
            pubs = await flow.publish(built, builder, reg, repo, {t.tag: t.platforms for t in project.targets},
                                      index=False, attest=await attester_for(signing, builder, build_info))
    summarize([b.report() for b in built])  # raises when the image failed
    return json.dumps({"job": the_job.as_dict(), "from_cache": cache.found, "published": cache.published,
                       "pushed": [p.tag for p in pubs if not p.skipped]})
