"""The Dagger functions of a release run in CI, on the Runner object: one job of the plan, the GitHub
driver that runs the jobs as a DAG, and the run's report. Each is a thin call into runner.release."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, function

from runner.dagger import checkout
from runner.dagger.args import (BackendVersion, IncludeDeprecated, Insecure, Namespace, OidcRequestToken,
                                OidcRequestUrl, OptBackend, Password, Registry, ReportFormat, Repository, RunId,
                                ServiceName, ServiceVersion, SigningKey, SigstoreToken, Username, Variant)
from runner.ui.selection import selection_of


class CiFunctions:
    """Functions the Runner object inherits (they use its `source`, `build_info` and `_released`)."""

    @function(cache="never")
    async def job(
        self,
        key: Annotated[str, Doc("the job's key, from `matrix --format github|gitlab`")],
        build_cache: Annotated[str, Doc("host/namespace/repository the jobs hand shared stages on through")],
        selection: Annotated[str, Doc("the selection the job was planned in (JSON), as `matrix` emits it; "
                                      "default: every target")] = "",
        registry: Annotated[str, Doc("where a target's job pushes its single-arch tag (the build cache may be "
                                     "another host)")] = "",
        username: Annotated[str, Doc("registry user (a dry run needs none)")] = "",
        password: Annotated[dagger.Secret | None, Doc("registry password, e.g. env://REGISTRY_PASSWORD (a dry run "
                                                      "needs none)")] = None,
        run: Annotated[str, Doc("the release run the job records its result under (GitHub's run_id, GitLab's "
                                "pipeline ID)")] = "",
        dry_run: Annotated[bool, Doc("build and smoke-test only: read the build cache, write nothing")] = False,
        emulate: Annotated[bool, Doc("run another platform's job under emulation (CI never does)")] = False,
        namespace: Namespace = "",
        repository: Repository = "",
        signing_key: SigningKey = None,
        sigstore_token: SigstoreToken = None,
        oidc_request_token: OidcRequestToken = None,
        oidc_request_url: OidcRequestUrl = "",
    ) -> str:
        """Run one CI job of a release: build its stage from the build cache and hand it on.

        The shared stages it made are pushed to the build cache; a target's job also smoke-tests the
        image, pushes its single-arch tag (with its SBOM and provenance signed by the key or keyless
        identity given) and records it for the run."""
        from runner.dagger.build import Signing, run_job

        return await run_job(self.source, key, selection, build_cache, registry, username, password, run, dry_run,
                             emulate, namespace, repository, self.build_info(),
                             Signing(signing_key, sigstore_token, oidc_request_token, oidc_request_url))

    @function(cache="never")
    async def release_report(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        run: RunId,
        namespace: Namespace = "",
        repository: Repository = "",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        include_deprecated: IncludeDeprecated = False,
        format: ReportFormat = "markdown",
        insecure: Insecure = False,
    ) -> str:
        """Report one release run per target and platform, as markdown, junit or json.

        Each row says whether it was built and tested (and why not), its digest, size and time, the
        run's -dev index and whether it is promoted."""
        return await self._released(backend, backend_version, variant, service, service_version, include_deprecated,
                                    registry, username, password, namespace, repository, insecure).report(run, format)


    @function(cache="never")
    async def drive(
        self,
        token: Annotated[dagger.Secret, Doc("a GitHub token that may dispatch workflows and read their runs "
                                            "(the workflow's GITHUB_TOKEN with actions: write)")],
        repository: Annotated[str, Doc("the GitHub repository, owner/name")],
        ref: Annotated[str, Doc("the branch or tag the job runs check out")],
        run: RunId,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        service_version: ServiceVersion = "",
        dry_run: Annotated[bool, Doc("the jobs build and smoke-test only, writing nothing")] = False,
        promote: Annotated[bool, Doc("passed on to a continuation of the release workflow")] = False,
        runners: Annotated[int, Doc("jobs running at once")] = 20,
        minutes: Annotated[int, Doc("stop after this long (below the driver job's own limit); jobs left are "
                                    "continued by a new run of the release workflow")] = 330,
        job_workflow: Annotated[str, Doc("the workflow file one job runs in")] = "release-job.yml",
        release_workflow: Annotated[str, Doc("the workflow file that continues the release")] = "release.yml",
        api: Annotated[str, Doc("GitHub's REST API")] = "https://api.github.com",
    ) -> str:
        """Run a release's CI jobs on GitHub Actions as a DAG and return their states as JSON.

        Each job is its own workflow run, started when the jobs it starts from passed; the JSON has
        the finished and failed jobs, each job's state and a Markdown summary."""
        from runner.flow.release import Release
        from runner.release.github_dispatch import drive_release
        from runner.release.run_records import check_run
        from runner.ui.release_report import jobs_markdown

        check_run(run)
        project = await checkout.load(self.source)
        selection = selection_of(backend.value if backend else "", backend_version, "", service, service_version, "",
                                 False)
        jobs = Release(project, targets=project.select(selection)).jobs
        inputs = {"backend": backend.value if backend else "", "backend_version": backend_version, "service": service,
                  "service_version": service_version, "dry_run": str(dry_run).lower(), "promote": str(promote).lower()}
        out = await drive_release(jobs, selection, await token.plaintext(), repository, ref, run, dry_run,
                                  max(1, runners), minutes, release_workflow, inputs, job_workflow, api)
        return json.dumps({**out, "summary": jobs_markdown(out["jobs"], run)}, indent=1)
