"""The Runner object: every `dagger call` function, each a thin call into runner.release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import dagger
from dagger import Doc, dag, field, function, object_type

from runner.dagger import checkout
from runner.dagger.args import (BackendVersion, Catalog, Concurrency, DockerfileForm, Gpu, IncludeDeprecated,
                                Insecure, MatrixFormat, Namespace, OptBackend, Password, Platform, Registry,
                                Repository, RunId, ServiceName, ServiceVersion, SkipMissing, Source, Tag,
                                Username, Variant)
from runner.dagger.build import Build, run_images, summarize
from runner.dagger.ci import CiFunctions
from runner.dagger.supply import SupplyChain
from runner.model.errors import Failed
from runner.release.provenance import EPOCH
from runner.ui.selection import selection_of


def _selection(backend, backend_version="", variant="", service="", service_version="", platform="",
               include_deprecated=True):
    return selection_of(backend.value if backend else "", backend_version, variant, service, service_version, platform,
                        include_deprecated)


@object_type
class Runner(CiFunctions, SupplyChain):
    """GPUStack Runner images: the matrix, its stage plan, builds with smoke tests, and releases."""

    source: Source
    source_url: Annotated[str, Doc("org.opencontainers.image.source of the images")] = "https://github.com/gpustack/runner"
    revision: Annotated[str, Doc("org.opencontainers.image.revision: the recipe commit")] = ""
    created: Annotated[str, Doc("org.opencontainers.image.created, RFC 3339: the recipe commit's time (CI passes "
                                "it); empty: the Unix epoch, so unchanged inputs give unchanged digests")] = ""

    def build_info(self) -> dict[str, str]:
        return {"source": self.source_url, "revision": self.revision, "created": self.created or EPOCH}

    @function
    async def matrix(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        format: Annotated[MatrixFormat, Doc("table, json, github or gitlab")] = MatrixFormat.TABLE,
    ) -> str:
        """The selected targets as a table or JSON, or the CI jobs in waves (github, gitlab): each distinct stage
        built by one job, from the shared stages earlier waves pushed to the build cache."""
        from runner.ui.selection import target_json

        project = await checkout.load(self.source)
        selection = _selection(backend, backend_version, variant, service, service_version, platform,
                               include_deprecated)
        targets = project.select(selection)
        if format == MatrixFormat.JSON:
            return json.dumps([target_json(t) for t in targets], indent=1)
        if format in (MatrixFormat.GITHUB, MatrixFormat.GITLAB):
            from runner.compose.jobs import ci_jobs
            from runner.compose.plan import make_plan
            from runner.release import fanout

            jobs = ci_jobs(make_plan(targets, project.recipes))
            return json.dumps((fanout.github if format == MatrixFormat.GITHUB else fanout.gitlab)(jobs, selection))
        return "\n".join(f"{t.tag:<40} {t.status:<10} {' '.join(t.platforms)}" for t in targets)

    @function
    async def plan(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        ci: Annotated[bool, Doc("the CI jobs' figures and the release's modelled time instead")] = False,
        runners: Annotated[int, Doc("runners for the modelled release time (with --ci)")] = 20,
    ) -> str:
        """The stage DAG of the selection as JSON: distinct stages (shared across targets) and the naive count;
        fails on a finding of the static checks (search paths replaced, required ARGs unread, undeclared URLs)."""
        from runner.compose.checks import check_stages
        from runner.compose.plan import make_plan

        project = await checkout.load(self.source)
        targets = project.select(_selection(backend, backend_version, variant, service, service_version, platform,
                                            include_deprecated))
        plan = make_plan(targets, project.recipes)
        if findings := check_stages(plan.stages):
            raise Failed("\n".join(str(f) for f in findings))
        if ci:
            from runner.compose.jobs import ci_jobs
            from runner.compose.schedule import model
            from runner.ui.release_report import ci_plan_lines

            jobs = ci_jobs(plan)
            return "\n".join(ci_plan_lines(jobs.figures(), model(jobs, max(1, runners)).as_dict()))
        return json.dumps(plan.to_json(), indent=1)

    @function
    async def resolve(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        refresh: Annotated[bool, Doc("ask uv again, even for answers remembered for this content")] = False,
    ) -> str:
        """Every install step of the selected images resolved by uv against the real indexes, as JSON; fails
        when a step does not resolve (steps behind an index the engine cannot reach are listed as not checked)."""
        from runner.compose.plan import make_plan
        from runner.verify.resolver import Resolver, resolve_all

        project = await checkout.load(self.source)
        targets = project.select(_selection(backend, backend_version, variant, service, service_version, platform,
                                            include_deprecated))
        leaves = [x for x in make_plan(targets, project.recipes).leaves if not platform or x.platform == platform]
        reports = await resolve_all(leaves, project.mirror_map(), Resolver(refresh=refresh))
        conflicts = [f"{r.tag} {r.platform} step {r.step} ({r.title}): {r.message}" for r in reports if r.status == "conflict"]
        if conflicts:
            raise Failed(f"{len(conflicts)} install steps do not resolve:\n" + "\n".join(conflicts))
        return json.dumps([r.to_json() for r in reports], indent=1)

    @function
    async def dockerfile(
        self,
        tag: Tag,
        platform: Annotated[str, Doc("platform; default: the target's first")] = "",
        form: Annotated[DockerfileForm, Doc("heredoc or compat")] = DockerfileForm.HEREDOC,
    ) -> str:
        """One target's stages rendered as a multi-stage Dockerfile (seed 000's convention)."""
        from runner.compose.dockerfile import render

        project = await checkout.load(self.source)
        return render(project.leaf_stage(tag, platform), form.value, project.mirror_map()).text

    @function
    async def base(self, tag: Tag, platform: Annotated[str, Doc("platform")] = "") -> dagger.Container:
        """The vendor base image of a target on one platform."""
        return await self._stage_container(tag, platform, "base")

    @function
    async def runtime(self, tag: Tag, platform: Annotated[str, Doc("platform")] = "") -> dagger.Container:
        """The shared runtime stage of a target on one platform, for cache-warm iteration (try `terminal`)."""
        return await self._stage_container(tag, platform, "runtime")

    @function
    async def service(self, tag: Tag, platform: Annotated[str, Doc("platform")] = "") -> dagger.Container:
        """The finished service image of a target on one platform, unpublished."""
        return await self._stage_container(tag, platform, "service")

    @function(cache="session")
    async def build(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        concurrency: Concurrency = 4,
        gpu: Gpu = False,
    ) -> str:
        """Build every selected target on each of its platforms, sharing stages, smoke-test each image and
        print one line per image; ends with an error listing what failed, if anything did."""
        built = await self.images(backend, service, backend_version, variant, service_version, platform,
                                  include_deprecated, concurrency, gpu)
        return summarize([json.loads(i.result) for i in built.images])

    @function(cache="session")
    async def images(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        concurrency: Concurrency = 4,
        gpu: Gpu = False,
    ) -> Build:
        """Build and smoke-test like `build`, and return the images to chain publish, report, summary or
        tarballs on (`images --backend cuda publish --registry ...`)."""
        selection = _selection(backend, backend_version, variant, service, service_version, platform,
                               include_deprecated)
        return await run_images(self.source, selection, concurrency, gpu, self.build_info())

    @function(cache="session")
    async def smoke(
        self,
        images: Annotated[list[str], Doc("image references; their tags name their targets")],
        target: Annotated[str, Doc("the target to test them as, when a tag is not a runner tag")] = "",
        platform: Annotated[str, Doc("only this platform (default: the tag's, else every platform of the target)")] = "",
        registry: Annotated[str, Doc("registry to log in to for private images")] = "",
        username: Annotated[str, Doc("registry user, for private images")] = "",
        password: Annotated[dagger.Secret | None, Doc("registry password, for private images")] = None,
        gpu: Gpu = False,
    ) -> Build:
        """Smoke-test existing images (a -dev index before promotion, any published runner image) with
        the checks a build of their target gets; chain `summary` (fails when a check failed) or `report`."""
        from runner.dagger.build import BuiltImage
        from runner.engines.dagger import DaggerBuilder, StageContainers
        from runner.release.existing import smoke_existing, subjects

        project = await checkout.load(self.source)
        builder = DaggerBuilder(StageContainers(), registry, username, password)
        found = []
        for subject in subjects(project, images, target, platform):
            for b in await smoke_existing(project, subject, builder, project.pack_path, gpu):
                found.append(BuiltImage(tag=b.target.tag, platform=b.platform, passed=b.passed,
                                        result=json.dumps(b.report()), container=b.handle if not b.error else None))
        return Build(source=self.source, selection="", images=found)

    @function(cache="never")
    async def merge(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "",
        repository: Repository = "",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        include_deprecated: IncludeDeprecated = False,
        insecure: Insecure = False,
        skip_missing: SkipMissing = False,
        run: RunId = "",
    ) -> str:
        """Write -dev indexes from the single-arch digests the CI jobs of one run recorded as tested, for
        tags whose platforms all passed in that run; ends with an error listing the others unless --skip-missing."""
        from runner.release import publish as flow
        from runner.release.attest import Carrier
        from runner.release.run_records import RunRecords, check_run
        from runner.ui.selection import publication_lines

        check_run(run)
        project, targets, repo = await self._registry_targets(backend, backend_version, variant, service,
                                                              service_version, namespace, repository, registry,
                                                              include_deprecated)
        async with await checkout.registry(registry, username, password, insecure) as reg:
            await reg.login()
            pubs = await flow.merge(targets, reg, repo, RunRecords(reg, repo.runs_path, run), attest=Carrier())
        text = "\n".join(publication_lines(pubs))
        if any(p.skipped for p in pubs) and not skip_missing:
            raise Failed(text)
        return text

    @function(cache="never")
    async def promote(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "",
        repository: Repository = "",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        include_deprecated: IncludeDeprecated = False,
        catalog: Catalog = None,
        insecure: Insecure = False,
        skip_missing: SkipMissing = False,
        run: Annotated[str, Doc("promote only the -dev indexes this release run's merge wrote (CI: always given)")] = "",
    ) -> dagger.File:
        """Point each target's final tag at its tested -dev index, byte for byte, without building;
        returns the updated catalog. A target without a -dev index (of the run, with --run) fails the
        call before anything changes, unless --skip-missing."""
        from runner.compose.catalog_records import catalog_records
        from runner.release import publish as flow
        from runner.release.run_records import RunRecords

        project, targets, repo = await self._registry_targets(backend, backend_version, variant, service,
                                                              service_version, namespace, repository, registry,
                                                              include_deprecated)

        async def change(book) -> None:
            async with await checkout.registry(registry, username, password, insecure) as reg:
                await reg.login()
                await flow.promote(targets, reg, repo, book, lambda ts: catalog_records(project, ts, repo.catalog_image),
                                   skip_missing=skip_missing, run=RunRecords(reg, repo.runs_path, run) if run else None)

        return await _updated_catalog(catalog, change)

    @function(cache="never")
    async def discard(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "",
        repository: Repository = "",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        catalog: Catalog = None,
        insecure: Insecure = False,
    ) -> dagger.File:
        """Delete every tag (final, -dev, single-arch) of the selected targets; returns the updated catalog.
        A registry that refuses deletes is found out before any tag is touched; their artifacts go too."""
        from runner.release import publish as flow, referrers

        project, targets, repo = await self._registry_targets(backend, backend_version, variant, service,
                                                              service_version, namespace, repository, registry,
                                                              deprecated=True)

        async def change(book) -> None:
            async with await checkout.registry(registry, username, password, insecure) as reg:
                await reg.login()
                await referrers.sweeping(reg, repo.path, lambda: flow.discard(targets, reg, repo, book))

        return await _updated_catalog(catalog, change)

    @function(cache="never")
    async def prune(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "",
        repository: Repository = "",
        intermediates: Annotated[bool, Doc("also delete -dev and single-arch tags of promoted targets")] = False,
        catalog: Catalog = None,
        insecure: Insecure = False,
    ) -> dagger.File:
        """Delete runner tags the matrix no longer has (and intermediates); returns the updated catalog."""
        from runner.release import publish as flow, referrers

        project = await checkout.load(self.source)
        repo = flow.Repository(registry, namespace or project.namespace, repository or project.repository)

        async def change(book) -> None:
            async with await checkout.registry(registry, username, password, insecure) as reg:
                await reg.login()
                await referrers.sweeping(reg, repo.path, lambda: flow.prune(
                    reg, repo, {t.tag for t in project.targets}, project.parser.parse, book, intermediates))

        return await _updated_catalog(catalog, change)

    # helpers (not Dagger functions)

    async def _registry_targets(self, backend, backend_version, variant, service, service_version, namespace,
                                repository, registry, deprecated: bool = False):
        from runner.release import publish as flow

        project = await checkout.load(self.source)
        targets = project.select(_selection(backend, backend_version, variant, service, service_version, "",
                                            deprecated))
        repo = flow.Repository(registry, namespace or project.namespace, repository or project.repository)
        return project, targets, repo

    async def _stage_container(self, tag: str, platform: str, kind: str) -> dagger.Container:
        from runner.engines.dagger import StageContainers

        project = await checkout.load(self.source)
        leaf = project.leaf_stage(tag, platform)
        stage = next(s for s in reversed(leaf.chain()) if s.kind == kind)
        return StageContainers(self.build_info(), project.mirror_map()).container(stage)


async def _updated_catalog(catalog: dagger.File | None, change) -> dagger.File:
    """Run `change(CatalogFile)` on a local copy of the catalog and return the result as a File."""
    import tempfile

    from runner.model.catalog import PACKAGED, CatalogFile

    with tempfile.TemporaryDirectory(prefix="runner-catalog-") as folder:
        path = Path(folder) / "catalog.json"
        path.write_text(await catalog.contents() if catalog else PACKAGED.read_text())
        await change(CatalogFile(path))
        return dag.directory().with_new_file("catalog.json", path.read_text()).file("catalog.json")
