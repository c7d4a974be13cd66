"""CI fan-out from the plan's jobs (runner.compose.jobs) as a DAG: each job starts when the jobs it
starts from are done, never at a wave's end; arm64 jobs on arm64 runners, compile jobs on larger
runners with the platform's longest time limit. Every job carries the selection it was planned in.

GitHub gets the job list the release workflow's driver dispatches, one workflow run per job
(runner.release.dag_driver); GitLab a child pipeline with one job per plan job and `needs` between
them, or, for a selection of several backends, one such child per backend (GitLab.com caps a pipeline
at 500 jobs; no stage is shared across backends). Job variables are named RUNNER_JOB_*: nothing a
parent pipeline forwards can shadow them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from runner.compose.jobs import Job, JobPlan
from runner.compose.schedule import model
from runner.model.errors import UserError
from runner.model.targets import Selection, Target

GITHUB_RUNNERS = {"linux/amd64": "ubuntu-22.04", "linux/arm64": "ubuntu-22.04-arm"}
GITHUB_MINUTES = {"compile": 360, "build": 120}  # 360: GitHub-hosted runners stop every job at 6 h
GITHUB_MAX_DISPATCHES = 600  # one API call each, within the token's 1000 calls per hour with the driver's polling
GITHUB_MAX_INPUTS = 10  # workflow_dispatch inputs release-job.yml may have
GITLAB_TAGS = {"linux/amd64": "saas-linux-medium-amd64", "linux/arm64": "saas-linux-medium-arm64"}
GITLAB_LARGE_TAGS = {"linux/amd64": "saas-linux-xlarge-amd64", "linux/arm64": "saas-linux-large-arm64"}
GITLAB_TIMEOUTS = {"compile": "3h", "build": "2h"}  # 3 h: GitLab.com's hosted runners stop every job there
GITLAB_MAX_JOBS = 500  # jobs in one active pipeline on GitLab.com's Free tier
GITLAB_MAX_NEEDS = 50  # `needs` entries per job on GitLab.com
GITLAB_CHILD = "child-pipeline.yml"  # what the parent pipeline's `builds` job triggers (ci/gitlab/pipeline.yml)
DRIVER_RUNNERS = 20  # jobs the GitHub driver runs at once (GitHub Free's concurrent jobs)


def large(job: Job) -> bool:
    """Jobs that compile (vLLM, kernels) need big runners and hours."""
    return any(s.compiles for s in job.builds)


def entry(job: Job, selection: Selection) -> dict:
    """What one job needs: its key, the selection it was planned in, where it runs and for how long,
    and what it is for people."""
    size = "compile" if large(job) else "build"
    return {**job.as_dict(), "large": large(job), "timeout": GITHUB_MINUTES[size], "selection": selection.to_json(),
            "runs_on": GITHUB_RUNNERS[job.root.platform]}


def github(jobs: JobPlan, selection: Selection) -> dict:
    """{"jobs": [...], "figures": ..., "schedule": ...}: what the release workflow's driver dispatches."""
    if len(jobs.jobs) > GITHUB_MAX_DISPATCHES:
        raise UserError(f"the plan has {len(jobs.jobs)} jobs; one release run dispatches at most "
                        f"{GITHUB_MAX_DISPATCHES} (GitHub's API budget per hour)",
                        hint="narrow the selection (one backend per workflow run)")
    return {"jobs": [entry(j, selection) for j in jobs.jobs], "figures": jobs.figures(),
            "schedule": model(jobs, DRIVER_RUNNERS).as_dict()}


def gitlab_name(job: Job) -> str:
    """A job's name in the child pipeline: what it builds, and its key (names must be unique)."""
    what = job.tag or (job.root.name if job.root.name == job.root.kind else f"{job.root.kind} {job.root.name}")
    return f"{what} {job.root.platform.split('/')[1]} {job.key[:16]}"


def gitlab(jobs: JobPlan, selection: Selection) -> dict:
    """A GitLab child pipeline: one job per plan job, `needs` wiring the DAG, then merge, promote and
    the report, from the templates in ci/gitlab/jobs.yml."""
    if len(jobs.jobs) + 3 > GITLAB_MAX_JOBS:
        of = f"backend {selection.backend}" if selection.backend else "the plan"
        raise UserError(f"{of} has {len(jobs.jobs)} jobs; a GitLab.com pipeline holds at most {GITLAB_MAX_JOBS}",
                        hint="a release already runs one child pipeline per backend: narrow this one "
                             "(RUNNER_BACKEND_VERSION, RUNNER_SERVICE) and release the rest in another pipeline")
    owners = jobs.owners()
    pipeline: dict = {"include": [{"local": "ci/gitlab/jobs.yml"}], "stages": ["build", "merge", "promote"]}
    for j in jobs.jobs:
        if len(j.needs) > GITLAB_MAX_NEEDS:
            raise UserError(f"job {gitlab_name(j)} starts from {len(j.needs)} jobs; GitLab allows {GITLAB_MAX_NEEDS} needs")
        size = "compile" if large(j) else "build"
        pipeline[gitlab_name(j)] = {
            "extends": ".runner-job", "stage": "build", "timeout": GITLAB_TIMEOUTS[size],
            "needs": sorted(gitlab_name(owners[k]) for k in j.needs),
            "variables": {"RUNNER_JOB_KEY": j.key[:16], "RUNNER_JOB_TAG": j.tag or "-",
                          "RUNNER_JOB_SELECTION": selection.to_json(), "RUNNER_JOB_PLATFORM": j.root.platform,
                          "RUNNER_JOB_RUNNER": (GITLAB_LARGE_TAGS if large(j) else GITLAB_TAGS)[j.root.platform]}}
    pipeline["merge"] = {"extends": ".runner-merge"}
    pipeline["promote"] = {"extends": ".runner-promote", "needs": ["merge"]}
    return pipeline


def gitlab_file(backend: str) -> str:
    """The file of one backend's child pipeline when a release is split per backend."""
    return f"child-{backend}.yml"


def gitlab_files(targets: Sequence[Target], selection: Selection,
                 plan: Callable[[list[Target]], JobPlan]) -> dict[str, dict]:
    """The child pipelines of a GitLab release by file name, `plan` giving the CI jobs of some targets.

    One backend: child-pipeline.yml is its pipeline (gitlab()). Several: one pipeline per backend, in
    its own file and selection, which child-pipeline.yml triggers from the templates .runner-pipelines
    and .runner-backend (ci/gitlab/jobs.yml); each child merges, promotes and reports its backend."""
    backends = sorted({t.backend for t in targets})
    if len(backends) <= 1:
        return {GITLAB_CHILD: gitlab(plan(list(targets)), selection)}
    files = {}
    for b in backends:
        child = gitlab(plan([t for t in targets if t.backend == b]), replace(selection, backend=b))
        # RUNNER_RELEASE_*: decided by the plan, never shadowed by the variables a parent forwards
        files[gitlab_file(b)] = {**child, "variables": {"RUNNER_RELEASE_BACKEND": b}}
    # trigger:include:artifact names a job of the same pipeline: `pipelines` hands the plan job's files on
    trigger: dict = {"include": [{"local": "ci/gitlab/jobs.yml"}], "stages": ["plan", "build"],
                     "pipelines": {"extends": ".runner-pipelines", "artifacts": {"paths": sorted(files)}}}
    for b in backends:
        trigger[b] = {"extends": ".runner-backend",
                      "trigger": {"include": [{"artifact": gitlab_file(b), "job": "pipelines"}]}}
    return {GITLAB_CHILD: trigger, **files}
