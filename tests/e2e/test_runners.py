"""A release across two CI runners that share nothing but one registry: two Docker daemons run the
jobs of `runner plan --ci` wave by wave, alternating, handing shared stages on through the build-cache
repository. Across both daemons every distinct step runs exactly once; a second run of every job
runs none; a job re-run after its cached stage is lost rebuilds only its own stage."""

from __future__ import annotations

import json

import pytest

from runner.compose.jobs import ci_jobs
from runner.compose.plan import make_plan
from runner.compose.project import load_project
from runner.compose.stages import File, Run
from tests.e2e import infra

pytestmark = pytest.mark.e2e


def _steps(stages) -> int:
    return sum(isinstance(s, (Run, File)) for stage in stages for s in stage.steps)  # each renders one RUN


@pytest.fixture(scope="module")
def runners(two_daemons):
    """Two fresh daemons (the session's own has built the fixture before: its cache is warm)."""
    return two_daemons


def _job(env, key: str, cache: str) -> dict:
    r = env.runner("job", key, "--build-cache", cache, "--no-smoke-cache", REGISTRY_USERNAME=env.username)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stdout.strip(), f"runner job {key} printed no report (exit {r.returncode}): {r.stderr[-2000:]}"
    out = json.loads(r.stdout)
    out["returncode"] = r.returncode
    out["stderr"] = r.stderr[-600:]
    return out


def test_two_runners_build_each_distinct_step_once_through_the_build_cache(runners, monkeypatch):
    first, second = runners
    cache = f"{first.registry}/e2e/runner-build-cache"
    monkeypatch.setenv("RUNNER_FIXTURE_INDEX", first.index)  # the recipe's index is part of its steps
    project = load_project(first.root / "project" / "matrix.yaml")
    plan = make_plan(project.targets, project.recipes)
    jobs = ci_jobs(plan)
    listed = json.loads(first.runner("plan", "--ci", "--format", "json").stdout)["jobs"]
    assert [j["key"] for j in listed] == [j.as_dict()["key"] for j in jobs.jobs]  # the CLI's plan is this plan
    distinct = _steps(s for s in plan.stages if s.kind != "base")
    executed, runs = 0, []
    for n, wave in enumerate(jobs.waves(), 1):
        for i, job in enumerate(wave):
            daemon = (first, second)[(i + n) % 2]  # alternate, so each wave hands stages across daemons
            out = _job(daemon, job.key, cache)
            runs.append(out)
            executed += out["steps"]["executed"]
    print(f"[runners] {len(runs)} jobs on 2 daemons: {executed} steps executed for {distinct} distinct steps",
          flush=True)
    assert executed == distinct, [(r["job"]["stage"], r["job"]["platform"], r["steps"], r["stderr"]) for r in runs]
    # the images that fail their smoke test (the fixture's broken arm64 0.3.0) fail their job, others pass
    assert sorted(r["job"]["tag"] for r in runs if r["returncode"]) == ["demo1.0-echo0.3.0"]
    assert all(r["from_cache"] for r in runs if r["job"]["wave"] > 1)

    again = [_job((second, first)[i % 2], job.key, cache) for i, job in enumerate(jobs.jobs)]
    assert sum(r["steps"]["executed"] for r in again) == 0

    # a stage job whose cached image is lost is rebuilt by its re-run, and nothing else
    lost = next(j for j in jobs.jobs if not j.tag)
    reg = first.skopeo("inspect", "--tls-verify=false", "--raw",
                       f"docker://{cache}:{_cache_tag(first, lost)}")
    assert reg.returncode == 0
    fresh = infra.second_daemon(first)  # a new runner: no local build cache either
    try:
        _delete(first, cache, _cache_tag(first, lost))
        out = _job(fresh, lost.key, cache)
    finally:
        infra.stop(fresh)
    assert out["steps"]["executed"] == _steps(lost.builds) and out["published_to_cache"], out


def _cache_tag(e, job) -> str:
    from runner.release.build_cache import cache_key

    image = job.root.chain()[0].image
    digest = e.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    return cache_key(job.root, digest)


def _delete(e, cache: str, tag: str) -> None:
    e.skopeo("delete", "--tls-verify=false", f"docker://{cache}:{tag}")
