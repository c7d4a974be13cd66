"""Objects to chain calls on, the filters declared once (`select`) and the registry once
(`with-registry`): `dagger call select --backend cuda --service vllm build`, or
`... select --backend cuda with-registry --address docker.io --username ci --password env://REGISTRY_PASSWORD publish`.
Each function is a thin call into runner.flow."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import dagger
from dagger import Doc, field, function, object_type

from runner.dagger import checkout
from runner.dagger.args import (Catalog, Concurrency, Gpu, Insecure, MatrixFormat, Namespace, OidcRequestToken,
                                OidcRequestUrl, OptPassword, Registry, ReportFormat, Repository, RunId, SigningKey,
                                SigstoreToken, SkipMissing, Username)
from runner.dagger.build import Build, run_images, summarize
from runner.dagger.ci import DriveFunction
from runner.dagger.rehearse import RehearseFunction
from runner.dagger.supply import MirrorFunctions
from runner.flow import on_dagger
from runner.flow.on_dagger import Signing
from runner.flow.release import Release
from runner.model.errors import Failed
from runner.release.publish import whole_tags_only
from runner.release.run_records import check_run
from runner.ui.release_report import render
from runner.ui.selection import publication_lines, selection_from_json, target_json


@object_type
class Released(MirrorFunctions):
    """A selection and the registry it is released to; chain publish, merge, promote, discard or report."""

    source: Annotated[dagger.Directory, Doc("the project")] = field()
    selection: Annotated[str, Doc("the selected targets' filters (JSON)")] = field()
    address: Annotated[str, Doc("registry host[:port]")] = field()
    username: Annotated[str, Doc("registry user")] = field(default="")
    password: Annotated[dagger.Secret | None, Doc("registry password or token")] = field(default=None)
    namespace: Annotated[str, Doc("image namespace (empty: the matrix's)")] = field(default="")
    repository: Annotated[str, Doc("image repository (empty: the matrix's)")] = field(default="")
    insecure: Annotated[bool, Doc("plain-HTTP registry")] = field(default=False)
    build_info: Annotated[str, Doc("OCI source, revision and created labels (JSON)")] = field(default="{}")

    async def release(self, op: str, writes: bool = True) -> Release:
        """The flow's Release of this selection for `op`, which acts on whole multi-arch tags; one that
        writes needs credentials (reads may be anonymous)."""
        project = await checkout.load(self.source)
        selection = selection_from_json(self.selection)
        whole_tags_only(selection.platform, op)
        if op == "discard":  # discard reaches deprecated tags too, whatever the selection says (as the CLI)
            selection = replace(selection, include_deprecated=True)
        to = await on_dagger.access(self.address, self.username, self.password, self.insecure, self.namespace,
                                    self.repository)
        if writes:
            to.credentials.required()
        return Release(project, selection, project.select(selection), registry=to)

    @function(cache="never")
    async def publish(
        self,
        concurrency: Concurrency = 4,
        gpu: Gpu = False,
        single_arch: Annotated[bool, Doc("push single-arch images only; `merge --run` writes the indexes")] = False,
        run: Annotated[str, Doc("record what was pushed under this release run (needed with --single-arch, "
                                "for `merge --run`)")] = "",
        signing_key: SigningKey = None,
        sigstore_token: SigstoreToken = None,
        oidc_request_token: OidcRequestToken = None,
        oidc_request_url: OidcRequestUrl = "",
    ) -> str:
        """Build, smoke-test and push the selection's images, then each fully passed tag's -dev index.

        Fails listing every tag that was not fully published; with a signer, each image gets its SBOM
        and signed provenance first."""
        project = await checkout.load(self.source)
        to = await on_dagger.access(self.address, self.username, self.password, self.insecure, self.namespace,
                                    self.repository)
        to.credentials.required()
        built = await run_images(self.source, selection_from_json(self.selection), concurrency, gpu,
                                 json.loads(self.build_info))
        signing = Signing(signing_key, sigstore_token, oidc_request_token, oidc_request_url)
        return await on_dagger.publish(project, built.as_built(project), to, signing, json.loads(self.build_info),
                                       single_arch, run)

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
        """Delete every tag of the selected targets, deprecated ones too, and return the updated catalog.

        Final, -dev and single-arch tags and their artifacts go; a registry that refuses deletes is
        found out before any tag is touched."""
        release = await self.release("discard")
        return await checkout.updated_catalog(catalog, lambda book: release.discard(book, history=False))

    @function(cache="never")
    async def report(self, run: RunId, format: ReportFormat = "markdown") -> str:
        """Report one release run per target and platform: tested or not, digest, -dev index, promoted."""
        return render(await (await self.release("the release report")).run_report(run), run, format)


@object_type
class Selected(DriveFunction, RehearseFunction):
    """The targets a selection keeps; chain matrix, plan, resolve, build, images, rehearse, drive or with-registry."""

    source: Annotated[dagger.Directory, Doc("the project")] = field()
    selection: Annotated[str, Doc("the filters (JSON), as `matrix --format github` emits them")] = field()
    build_info: Annotated[str, Doc("OCI source, revision and created labels (JSON)")] = field(default="{}")

    async def project_and_targets(self) -> tuple:
        """The project and the targets the selection keeps (an empty or misspelt selection is a UserError)."""
        project = await checkout.load(self.source)
        return project, project.select(selection_from_json(self.selection))

    @function
    async def matrix(self, format: Annotated[MatrixFormat, Doc("table, json, github or gitlab")] = MatrixFormat.TABLE
                     ) -> str:
        """List the selected targets as a table or JSON, or their CI jobs in waves (github, gitlab).

        Each distinct stage is built by one job, from the shared stages earlier waves pushed to the
        build cache. gitlab maps file names to child pipelines: one per backend when there are several."""
        project, targets = await self.project_and_targets()
        if format == MatrixFormat.JSON:
            return json.dumps([target_json(t) for t in targets], indent=1)
        if format in (MatrixFormat.GITHUB, MatrixFormat.GITLAB):
            from runner.release import fanout

            selection = selection_from_json(self.selection)
            if format == MatrixFormat.GITHUB:
                return json.dumps(fanout.github(Release(project, targets=targets).jobs, selection))
            # the child pipelines by file name: one per backend when there are several
            return json.dumps(fanout.gitlab_files(targets, selection, lambda some: Release(project, targets=some).jobs))
        return "\n".join(f"{t.tag:<40} {t.status:<10} {' '.join(t.platforms)}" for t in targets)

    @function
    async def plan(
        self,
        ci: Annotated[bool, Doc("the CI jobs' figures and the release's modelled time instead")] = False,
        runners: Annotated[int, Doc("runners for the modelled release time (with --ci)")] = 20,
    ) -> str:
        """Show the selection's stage DAG as JSON and fail on a finding of the static checks.

        The JSON counts distinct stages (shared across targets) and the naive count; the checks find
        search paths replaced, required ARGs unread and undeclared URLs."""
        from runner.compose.checks import check_stages

        project, targets = await self.project_and_targets()
        release = Release(project, targets=targets)
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
        refresh: Annotated[bool, Doc("ask uv again, even for answers remembered for this content")] = False,
    ) -> str:
        """Resolve every install step of the selected images with uv and return the answers as JSON.

        Fails when a step does not resolve; steps behind an index the engine cannot reach are listed
        as not checked."""
        from runner.verify.resolver import Resolver, resolve_all

        project, targets = await self.project_and_targets()
        platform = selection_from_json(self.selection).platform
        leaves = [x for x in Release(project, targets=targets).plan.leaves if not platform or x.platform == platform]
        reports = await resolve_all(leaves, project.mirror_map(), Resolver(refresh=refresh))
        conflicts = [f"{r.tag} {r.platform} step {r.step} ({r.title}): {r.message}" for r in reports if r.status == "conflict"]
        if conflicts:
            raise Failed(f"{len(conflicts)} install steps do not resolve:\n" + "\n".join(conflicts))
        return json.dumps([r.to_json() for r in reports], indent=1)

    @function(cache="session")
    async def images(self, concurrency: Concurrency = 4, gpu: Gpu = False) -> Build:
        """Build and smoke-test every selected image; chain summary, report or tarballs."""
        return await run_images(self.source, selection_from_json(self.selection), concurrency, gpu,
                                json.loads(self.build_info))

    @function(cache="session")
    async def build(self, concurrency: Concurrency = 4, gpu: Gpu = False) -> str:
        """Build every selected target on each platform, smoke-test each image and print one line per image.

        Stages shared across targets are built once; ends with an error listing what failed, if anything did."""
        built = await self.images(concurrency, gpu)
        return summarize([json.loads(i.result) for i in built.images])

    @function
    def with_registry(
        self,
        address: Registry,
        username: Username = "",
        password: OptPassword = None,
        namespace: Namespace = "",
        repository: Repository = "",
        insecure: Insecure = False,
    ) -> Released:
        """Name the registry to release to; chain publish, merge, promote, discard, report, mirror or digests."""
        return Released(source=self.source, selection=self.selection, address=address, username=username,
                        password=password, namespace=namespace, repository=repository, insecure=insecure,
                        build_info=self.build_info)
