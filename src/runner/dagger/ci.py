"""The Dagger functions of a release run in CI: one job of the plan (on the Runner object) and the
GitHub driver that runs a selection's jobs as a DAG (chained on `select`). Each is a thin call into
runner.release."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, function

from runner.dagger import checkout
from runner.dagger.args import (Namespace, OidcRequestToken, OidcRequestUrl, Repository, RunId, SigningKey,
                                SigstoreToken)
from runner.model.errors import UserError
from runner.model.targets import Selection
from runner.ui.selection import selection_from_json

# What the release workflow's inputs carry on to a continuation run: a selection with any other filter
# (or with deprecated versions) could not be continued as it was started.
WORKFLOW_FILTERS = ("backend", "backend_version", "service", "service_version")


class CiFunctions:
    """Functions the Runner object inherits (they use its `source` and `build_info`)."""

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


class DriveFunction:
    """Mixed into the Selected object (it uses its `source` and `selection`)."""

    source: dagger.Directory
    selection: str

    @function(cache="never")
    async def drive(
        self,
        token: Annotated[dagger.Secret, Doc("a GitHub token that may dispatch workflows and read their runs "
                                            "(the workflow's GITHUB_TOKEN with actions: write)")],
        repository: Annotated[str, Doc("the GitHub repository, owner/name")],
        ref: Annotated[str, Doc("the branch or tag the job runs check out")],
        run: RunId,
        dry_run: Annotated[bool, Doc("the jobs build and smoke-test only, writing nothing")] = False,
        promote: Annotated[bool, Doc("passed on to a continuation of the release workflow")] = False,
        runners: Annotated[int, Doc("jobs running at once")] = 20,
        minutes: Annotated[int, Doc("stop after this long (below the driver job's own limit); jobs left are "
                                    "continued by a new run of the release workflow")] = 330,
        job_workflow: Annotated[str, Doc("the workflow file one job runs in")] = "release-job.yml",
        release_workflow: Annotated[str, Doc("the workflow file that continues the release")] = "release.yml",
        api: Annotated[str, Doc("GitHub's REST API")] = "https://api.github.com",
    ) -> str:
        """Run the selection's release jobs on GitHub Actions as a DAG and return their states as JSON.

        Each job is its own workflow run, started when the jobs it starts from passed; the JSON has
        the finished and failed jobs, each job's state and a Markdown summary. The selection may use
        the filters the release workflow's inputs carry on only: backend, service and their versions."""
        from runner.flow.release import Release
        from runner.release.github_dispatch import drive_release
        from runner.release.run_records import check_run
        from runner.ui.release_report import jobs_markdown

        check_run(run)
        selection = selection_from_json(self.selection)
        carried = {k: getattr(selection, k) for k in WORKFLOW_FILTERS}
        if selection != Selection(**carried, include_deprecated=False):
            raise UserError("a release the workflow can continue is selected by backend, service and their "
                            "versions only, deprecated versions left out", value=selection.describe(),
                            allowed=", ".join(WORKFLOW_FILTERS))
        project = await checkout.load(self.source)
        jobs = Release(project, targets=project.select(selection)).jobs
        inputs = {**carried, "dry_run": str(dry_run).lower(), "promote": str(promote).lower()}
        out = await drive_release(jobs, selection, await token.plaintext(), repository, ref, run, dry_run,
                                  max(1, runners), minutes, release_workflow, inputs, job_workflow, api)
        return json.dumps({**out, "summary": jobs_markdown(out["jobs"], run)}, indent=1)
