"""CI fan-out from the plan's jobs (runner.compose.jobs): waves of jobs, each building one stage (or
one target's image) from what earlier waves pushed to the build cache, arm64 on arm64 runners,
compile jobs on larger runners with longer timeouts. GitHub gets one matrix per wave (the workflow
wires the waves with `needs`); GitLab a child pipeline with one stage per wave.

Job variables are named RUNNER_JOB_*: nothing a parent pipeline forwards can shadow them."""

from __future__ import annotations

from runner.compose.jobs import Job, JobPlan

GITHUB_RUNNERS = {"linux/amd64": "ubuntu-22.04", "linux/arm64": "ubuntu-22.04-arm"}
GITLAB_TAGS = {"linux/amd64": "saas-linux-medium-amd64", "linux/arm64": "saas-linux-medium-arm64"}
GITLAB_LARGE_TAGS = {"linux/amd64": "saas-linux-xlarge-amd64", "linux/arm64": "saas-linux-large-arm64"}
GITHUB_MAX_JOBS = 256  # per matrix, and per workflow run
GITLAB_MAX_PARALLEL = 200  # jobs per parallel:matrix
MAX_WAVES = 8  # the waves the workflow files define


def large(job: Job) -> bool:
    """Jobs that compile (vLLM, kernels) need big runners and hours."""
    return any(s.kind.endswith("-build") for s in job.builds)


def entry(job: Job) -> dict:
    """What one job needs: its key, where it runs and for how long, and what it is for people."""
    return {**job.as_dict(), "large": large(job), "timeout": 360 if large(job) else 120}


def _check(jobs: JobPlan) -> None:
    from runner.model.errors import UserError

    waves = jobs.waves()
    if len(waves) > MAX_WAVES:
        raise UserError(f"the plan needs {len(waves)} waves of jobs; the CI definitions have {MAX_WAVES}",
                        hint="add wave jobs to .github/workflows/release.yml and raise MAX_WAVES")
    if sum(len(w) for w in waves) > GITHUB_MAX_JOBS * MAX_WAVES:
        raise UserError("too many jobs for one workflow run: narrow the selection")


def github(jobs: JobPlan) -> dict:
    """{"waves": N, "wave1": {"include": [...]}, ...}: one `strategy.matrix` per wave."""
    _check(jobs)
    out: dict = {"waves": len(jobs.waves()), "figures": jobs.figures()}
    for n, wave in enumerate(jobs.waves(), 1):
        if len(wave) > GITHUB_MAX_JOBS:
            from runner.model.errors import UserError

            raise UserError(f"wave {n} has {len(wave)} jobs, more than GitHub's {GITHUB_MAX_JOBS} per matrix",
                            hint="narrow the selection (one backend per workflow run)")
        out[f"wave{n}"] = {"include": [{**entry(j), "runs_on": GITHUB_RUNNERS[j.root.platform]} for j in wave]}
    return out


def gitlab(jobs: JobPlan) -> dict:
    """A GitLab child pipeline: a stage per wave (jobs in parallel:matrix chunks), then merge and
    promote, from the templates in ci/gitlab/jobs.yml."""
    _check(jobs)
    waves = jobs.waves()
    pipeline: dict = {"include": [{"local": "ci/gitlab/jobs.yml"}],
                      "stages": [f"wave-{n}" for n in range(1, len(waves) + 1)] + ["merge", "promote"]}
    for n, wave in enumerate(waves, 1):
        for size in ("compile", "build"):  # GitLab's timeout takes no variable: a job per size
            entries = [{"RUNNER_JOB_KEY": j.key[:16], "RUNNER_JOB_TAG": j.tag or "-",
                        "RUNNER_JOB_RUNNER": (GITLAB_LARGE_TAGS if large(j) else GITLAB_TAGS)[j.root.platform]}
                       for j in wave if large(j) == (size == "compile")]
            for k, start in enumerate(range(0, len(entries), GITLAB_MAX_PARALLEL), 1):
                pipeline[f"wave-{n}-{size}-{k}"] = {
                    "extends": ".runner-job", "stage": f"wave-{n}", "timeout": "6h" if size == "compile" else "2h",
                    "parallel": {"matrix": entries[start:start + GITLAB_MAX_PARALLEL]}}
    pipeline["merge"] = {"extends": ".runner-merge"}
    pipeline["promote"] = {"extends": ".runner-promote", "needs": ["merge"]}
    return pipeline
