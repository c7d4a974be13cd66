"""The Runner object: `select`, where the filters are declared once (every function that acts on a
selection is chained on it: runner.dagger.chain), and the functions that take no selection (one tag's
stages, smoke tests of existing images, prune, CI jobs, verify). Each is a thin call into runner.flow."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, function, object_type

from runner.dagger import checkout
from runner.dagger.args import (BackendVersion, BackendVersionPrefix, Catalog, DockerfileForm, Gpu,
                                IncludeDeprecated, Insecure, Namespace, OptBackend, Password, Platform, Registry,
                                Repository, SelectTags, ServiceName, ServiceVersion, ServiceVersionPrefix, SkipTags,
                                Source, Tag, Username, Variant)
from runner.dagger.build import Build, built_images
from runner.dagger.chain import Selected
from runner.dagger.ci import CiFunctions
from runner.dagger.supply import SupplyChain
from runner.flow import on_dagger
from runner.flow.release import Release
from runner.release.provenance import EPOCH
from runner.ui.selection import selection_json, selection_of


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
        backend_version_prefix: BackendVersionPrefix = "",
        service_version_prefix: ServiceVersionPrefix = "",
        select: SelectTags = "",
        skip: SkipTags = "",
    ) -> Selected:
        """Select targets by backend, service, versions and tags; chain matrix, plan, build or with-registry.

        The filters are declared here only: every function that acts on a selection is chained on the
        object this returns, e.g. `select --backend cuda --service vllm build`."""
        selection = selection_of(backend.value if backend else "", backend_version, variant, service, service_version,
                                 platform, include_deprecated, backend_version_prefix=backend_version_prefix,
                                 service_version_prefix=service_version_prefix, select=select, skip=skip)
        return Selected(source=self.source, selection=selection_json(selection), build_info=json.dumps(self.build_info()))

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

    async def _stage_container(self, tag: str, platform: str, kind: str) -> dagger.Container:
        return on_dagger.stage_container(await checkout.load(self.source), tag, platform, kind, self.build_info())

