"""Fan-out matrices for CI: one job per target and platform, arm64 on native arm64 runners."""

from __future__ import annotations

from collections.abc import Sequence

from runner.model.targets import Target

GITHUB_RUNNERS = {"linux/amd64": "ubuntu-22.04", "linux/arm64": "ubuntu-22.04-arm"}
GITLAB_TAGS = {"linux/amd64": "saas-linux-medium-amd64", "linux/arm64": "saas-linux-medium-arm64"}


def jobs(targets: Sequence[Target]) -> list[dict[str, str]]:
    """One entry per target and platform with what a build job needs to select exactly it."""
    return [
        {"tag": t.tag, "backend": t.backend, "backend_version": t.original_backend_version, "variant": t.variant,
         "service": t.service, "service_version": t.service_version, "platform": p, "arch": p.split("/")[1]}
        for t in targets for p in t.platforms
    ]


def github(targets: Sequence[Target]) -> dict:
    """`strategy.matrix` for GitHub Actions (include-only, with the runner label per platform)."""
    return {"include": [{**j, "runs_on": GITHUB_RUNNERS[j["platform"]]} for j in jobs(targets)]}


GITLAB_MAX_PARALLEL = 200  # GitLab's limit of jobs per parallel:matrix


def gitlab(targets: Sequence[Target]) -> dict:
    """A GitLab child pipeline: build jobs fanned out with parallel:matrix (one per target and platform,
    split in chunks of GitLab's limit), then merge and promote, from the templates in ci/gitlab/jobs.yml."""
    entries = [
        {"RUNNER_TAG": j["tag"], "RUNNER_BACKEND": j["backend"], "RUNNER_BACKEND_VERSION": j["backend_version"],
         "RUNNER_VARIANT": j["variant"], "RUNNER_SERVICE": j["service"], "RUNNER_SERVICE_VERSION": j["service_version"],
         "RUNNER_PLATFORM": j["platform"], "RUNNER_ARCH_TAG": GITLAB_TAGS[j["platform"]]}
        for j in jobs(targets)
    ]
    pipeline: dict = {"include": [{"local": "ci/gitlab/jobs.yml"}], "stages": ["build", "merge", "promote"]}
    for n, start in enumerate(range(0, len(entries), GITLAB_MAX_PARALLEL), 1):
        pipeline[f"build-{n}"] = {"extends": ".runner-build", "parallel": {"matrix": entries[start:start + GITLAB_MAX_PARALLEL]}}
    pipeline["merge"] = {"extends": ".runner-merge"}
    pipeline["promote"] = {"extends": ".runner-promote"}
    return pipeline
