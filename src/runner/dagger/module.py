"""The Runner object: every `dagger call` function, each a thin call into runner.release."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, function, object_type

from runner.dagger import checkout
from runner.dagger.args import (BackendVersion, Catalog, Concurrency, DockerfileForm, Gpu, IncludeDeprecated,
                                Insecure, MatrixFormat, Namespace, OptBackend, Password, Platform, Registry,
                                Repository, RunId, ServiceName, ServiceVersion, SkipMissing, Source, Tag,
                                Username, Variant)
from runner.dagger.build import Build, built_images, run_images, summarize
from runner.dagger.chain import Released, Selected
from runner.dagger.ci import CiFunctions
from runner.dagger.supply import SupplyChain
from runner.flow import on_dagger
from runner.flow.release import Release
from runner.model.errors import Failed
from runner.release.provenance import EPOCH
from runner.ui.selection import selection_json, selection_of


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
    def select(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
    ) -> Selected:
        """Select targets by backend, service and versions; chain build, images, plan or with-registry."""
        selection = _selection(backend, backend_version, variant, service, service_version, platform,
                               include_deprecated)
        return Selected(source=self.source, selection=selection_json(selection), build_info=json.dumps(self.build_info()))

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
        """List the selected targets as a table or JSON, or their CI jobs in waves (github, gitlab).

        Each distinct stage is built by one job, from the shared stages earlier waves pushed to the
        build cache."""
        from runner.ui.selection import target_json

        project = await checkout.load(self.source)
        selection = _selection(backend, backend_version, variant, service, service_version, platform,
                               include_deprecated)
        targets = project.select(selection)
        if format == MatrixFormat.JSON:
            return json.dumps([target_json(t) for t in targets], indent=1)
        if format in (MatrixFormat.GITHUB, MatrixFormat.GITLAB):
            from runner.release import fanout

            jobs = Release(project, targets=targets).jobs
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
        """Show the selection's stage DAG as JSON and fail on a finding of the static checks.

        The JSON counts distinct stages (shared across targets) and the naive count; the checks find
        search paths replaced, required ARGs unread and undeclared URLs."""
        from runner.compose.checks import check_stages

        project = await checkout.load(self.source)
        release = Release(project, targets=project.select(_selection(backend, backend_version, variant, service,
                                                                     service_version, platform, include_deprecated)))
        plan = release.plan
        if findings := check_stages(plan.stages):
            raise Failed("\n".join(str(f) for f in findings))
        if ci:
            from runner.compose.schedule import model
            from runner.ui.release_report import ci_plan_lines

            jobs = release.jobs
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
        """Resolve every install step of the selected images with uv and return the answers as JSON.

        Fails when a step does not resolve; steps behind an index the engine cannot reach are listed
        as not checked."""
        from runner.verify.resolver import Resolver, resolve_all

        project = await checkout.load(self.source)
        targets = project.select(_selection(backend, backend_version, variant, service, service_version, platform,
                                            include_deprecated))
        leaves = [x for x in Release(project, targets=targets).plan.leaves if not platform or x.platform == platform]
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
        """Render one target's stages as a multi-stage Dockerfile, one stage per build step."""
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
        """Build every selected target on each platform, smoke-test each image and print one line per image.

        Stages shared across targets are built once; ends with an error listing what failed, if
        anything did."""
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
        """Build and smoke-test like `build`, and return the images to chain publish, report or tarballs on.

        For example `images --backend cuda publish --registry ...`, or `images ... summary`."""
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
        """Smoke-test existing images with the checks a build of their target gets.

        Any published runner image or a -dev index before promotion; chain `summary` (fails when a
        check failed) or `report`."""
        project = await checkout.load(self.source)
        found = await on_dagger.smoke(project, images, target, platform, registry, username, password, gpu)
        return Build(source=self.source, selection="", images=built_images(found))

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
        """Write each tag's -dev index from the single-arch images one run's CI jobs recorded as tested.

        Only tags whose platforms all passed in that run get an index; ends with an error listing the
        others unless --skip-missing."""
        return await self._released(backend, backend_version, variant, service, service_version, include_deprecated,
                                    registry, username, password, namespace, repository, insecure).merge(run, skip_missing)

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
        """Point each target's final tag at its tested -dev index and return the updated catalog.

        Nothing is rebuilt: the final tag is the -dev index byte for byte. A target without a -dev
        index (of the run, with --run) fails the call before anything changes, unless --skip-missing."""
        released = self._released(backend, backend_version, variant, service, service_version, include_deprecated,
                                  registry, username, password, namespace, repository, insecure)
        return await released.promote(catalog, run, skip_missing)

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
        """Delete every tag of the selected targets and return the updated catalog.

        Final, -dev and single-arch tags and their artifacts go; a registry that refuses deletes is
        found out before any tag is touched."""
        released = self._released(backend, backend_version, variant, service, service_version, True, registry,
                                  username, password, namespace, repository, insecure)
        return await released.discard(catalog)

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
        to = await on_dagger.access(registry, username, password, insecure, namespace, repository)
        release = Release(await checkout.load(self.source), registry=to)

        async def change(book) -> None:
            await release.prune(book, intermediates, history=False)

        return await checkout.updated_catalog(catalog, change)

    # helpers (not Dagger functions)

    def _released(self, backend, backend_version, variant, service, service_version, deprecated: bool, registry: str,
                  username: str, password: dagger.Secret, namespace: str, repository: str, insecure: bool) -> Released:
        """The selection (whole multi-arch tags) and the registry it is released to."""
        return self.select(backend, service, backend_version, variant, service_version, "", deprecated).with_registry(
            registry, username, password, namespace, repository, insecure)

    async def _stage_container(self, tag: str, platform: str, kind: str) -> dagger.Container:
        return on_dagger.stage_container(await checkout.load(self.source), tag, platform, kind, self.build_info())

