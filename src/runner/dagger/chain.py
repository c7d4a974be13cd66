"""Objects to chain calls on, the filters declared once (`select`) and the registry once
(`with-registry`): `dagger call select --backend cuda --service vllm build`, or
`... select --backend cuda with-registry --address docker.io --username ci --password env://REGISTRY_PASSWORD publish`.
Each function is a thin call into runner.flow."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, field, function, object_type

from runner.dagger import checkout
from runner.dagger.args import (Catalog, Concurrency, Gpu, Insecure, Namespace, OidcRequestToken, OidcRequestUrl,
                                Password, ReportFormat, Repository, RunId, SigningKey, SigstoreToken, SkipMissing,
                                Username)
from runner.dagger.build import Build, run_images, summarize
from runner.flow import on_dagger
from runner.flow.release import Release
from runner.model.errors import Failed
from runner.release.publish import whole_tags_only
from runner.release.run_records import check_run
from runner.ui.release_report import render
from runner.ui.selection import publication_lines, selection_from_json, target_json


@object_type
class Released:
    """A selection and the registry it is released to; chain publish, merge, promote, discard or report."""

    source: Annotated[dagger.Directory, Doc("the project")] = field()
    selection: Annotated[str, Doc("the selected targets' filters (JSON)")] = field()
    address: Annotated[str, Doc("registry host[:port]")] = field()
    username: Annotated[str, Doc("registry user")] = field()
    password: Annotated[dagger.Secret, Doc("registry password or token")] = field()
    namespace: Annotated[str, Doc("image namespace (empty: the matrix's)")] = field(default="")
    repository: Annotated[str, Doc("image repository (empty: the matrix's)")] = field(default="")
    insecure: Annotated[bool, Doc("plain-HTTP registry")] = field(default=False)
    build_info: Annotated[str, Doc("OCI source, revision and created labels (JSON)")] = field(default="{}")

    async def release(self, op: str) -> Release:
        """The flow's Release of this selection for `op`, which acts on whole multi-arch tags."""
        project = await checkout.load(self.source)
        selection = selection_from_json(self.selection)
        whole_tags_only(selection.platform, op)
        to = await on_dagger.access(self.address, self.username, self.password, self.insecure, self.namespace,
                                    self.repository)
        return Release(project, selection, project.select(selection), registry=to)

    @function(cache="never")
    async def publish(
        self,
        concurrency: Concurrency = 4,
        gpu: Gpu = False,
        single_arch: Annotated[bool, Doc("push single-arch images only; `merge --run` writes the indexes")] = False,
        run: Annotated[str, Doc("record what was pushed under this release run")] = "",
        signing_key: SigningKey = None,
        sigstore_token: SigstoreToken = None,
        oidc_request_token: OidcRequestToken = None,
        oidc_request_url: OidcRequestUrl = "",
    ) -> str:
        """Build, smoke-test and push the selection's images, then each fully passed tag's -dev index.

        Fails listing every tag that was not fully published; with a signer, each image gets its SBOM
        and signed provenance first."""
        built = await run_images(self.source, selection_from_json(self.selection), concurrency, gpu,
                                 json.loads(self.build_info))
        return await built.publish(self.address, self.username, self.password, self.namespace, self.repository,
                                   single_arch, self.insecure, signing_key, sigstore_token, oidc_request_token,
                                   oidc_request_url, run)

    @function(cache="never")
    async def merge(self, run: RunId, skip_missing: SkipMissing = False) -> str:
        """Write each tag's -dev index from the single-arch images one run recorded as tested.

        Only tags whose platforms all passed in that run get an index; fails listing the others unless
        --skip-missing."""
        check_run(run)
        pubs, _ = await (await self.release("merge")).merge(run)
        text = "\n".join(publication_lines(pubs))
        if any(p.skipped for p in pubs) and not skip_missing:
            raise Failed(text)
        return text

    @function(cache="never")
    async def promote(self, catalog: Catalog = None, run: RunId = "", skip_missing: SkipMissing = False) -> dagger.File:
        """Point each target's final tag at its tested -dev index and return the updated catalog.

        Nothing is rebuilt: the final tag is the -dev index byte for byte. A target without one fails the
        call before anything changes, unless --skip-missing."""
        release = await self.release("promote")
        return await checkout.updated_catalog(catalog, lambda book: release.promote(book, run, skip_missing,
                                                                                history=False))

    @function(cache="never")
    async def discard(self, catalog: Catalog = None) -> dagger.File:
        """Delete every tag of the selected targets and return the updated catalog.

        Final, -dev and single-arch tags and their artifacts go; a registry that refuses deletes is
        found out before any tag is touched."""
        release = await self.release("discard")
        return await checkout.updated_catalog(catalog, lambda book: release.discard(book, history=False))

    @function(cache="never")
    async def report(self, run: RunId, format: ReportFormat = "markdown") -> str:
        """Report one release run per target and platform: tested or not, digest, -dev index, promoted."""
        return render(await (await self.release("the release report")).run_report(run), run, format)


@object_type
class Selected:
    """The targets a selection keeps; chain matrix, plan, build, images or with-registry."""

    source: Annotated[dagger.Directory, Doc("the project")] = field()
    selection: Annotated[str, Doc("the filters (JSON), as `matrix --format github` emits them")] = field()
    build_info: Annotated[str, Doc("OCI source, revision and created labels (JSON)")] = field(default="{}")

    @function
    async def matrix(self) -> str:
        """List the selected targets as JSON, one object per target."""
        project = await checkout.load(self.source)
        return json.dumps([target_json(t) for t in project.select(selection_from_json(self.selection))], indent=1)

    @function
    async def plan(self) -> str:
        """Show the selection's stage DAG as JSON, each stage shared across targets once."""
        project = await checkout.load(self.source)
        return json.dumps(Release(project, targets=project.select(selection_from_json(self.selection))).plan.to_json(),
                          indent=1)

    @function(cache="session")
    async def images(self, concurrency: Concurrency = 4, gpu: Gpu = False) -> Build:
        """Build and smoke-test every selected image; chain summary, report, tarballs or publish."""
        return await run_images(self.source, selection_from_json(self.selection), concurrency, gpu,
                                json.loads(self.build_info))

    @function(cache="session")
    async def build(self, concurrency: Concurrency = 4, gpu: Gpu = False) -> str:
        """Build and smoke-test every selected image and print one line per image.

        Stages shared across targets are built once; ends with an error listing what failed, if anything did."""
        built = await self.images(concurrency, gpu)
        return summarize([json.loads(i.result) for i in built.images])

    @function
    def with_registry(
        self,
        address: Annotated[str, Doc("registry host the engine can reach, e.g. docker.io")],
        username: Username,
        password: Password,
        namespace: Namespace = "",
        repository: Repository = "",
        insecure: Insecure = False,
    ) -> Released:
        """Name the registry to release to; chain publish, merge, promote, discard or report."""
        return Released(source=self.source, selection=self.selection, address=address, username=username,
                        password=password, namespace=namespace, repository=repository, insecure=insecure,
                        build_info=self.build_info)
