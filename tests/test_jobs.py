"""CI jobs from the plan: each distinct stage built by one job, vLLM compiled once per distinct build,
waves within the CI systems' limits; Dockerfiles that start from build-cache images."""

from __future__ import annotations

import dockerfile

from runner.compose.dockerfile import render
from runner.compose.jobs import VLLM_COMPILE, ci_jobs
from runner.compose.plan import make_plan


def test_each_distinct_stage_is_built_by_exactly_one_job(project):
    plan = make_plan(project.targets, project.recipes)
    jobs = ci_jobs(plan)
    built = [s.key for j in jobs.jobs for s in j.builds]
    assert len(built) == len(set(built)) == len([s for s in plan.stages if s.kind != "base"])
    figures = jobs.figures()
    assert figures["stage_builds"] == figures["distinct_stages"]
    assert figures["vllm_compiles"] == figures["distinct_vllm_compiles"] > 0
    assert figures["max_vllm_compiles_per_job"] == 1
    assert max(figures["jobs_per_wave"]) <= 256  # GitHub's jobs per matrix
    # every target and platform has its own job; a job runs after the jobs it starts from
    assert {(j.tag, j.root.platform) for j in jobs.jobs if j.tag} == {(x.target.tag, x.platform) for x in plan.leaves}
    by_key = {j.key: j for j in jobs.jobs}
    assert all(by_key[k].wave < j.wave for j in jobs.jobs for k in j.needs)
    # SGLang starts from its release's vLLM image: it never compiles vLLM itself
    for j in jobs.jobs:
        if j.tag and "-sglang" in j.tag:
            assert not any(s.name == VLLM_COMPILE for s in j.builds)


def test_a_dockerfile_starts_from_build_cache_images(project):
    leaf = project.leaf_stage("cuda12.8-vllm0.14.1", "linux/amd64")
    torch = next(s for s in leaf.chain() if s.kind == "torch")
    ref = "127.0.0.1:5000/gpustack/runner-build-cache:abc"
    text = render(leaf, "compat", substitutes={torch.key: ref}).text
    froms = [c for c in dockerfile.parse_string(text) if c.cmd == "FROM"]
    assert any(c.value[0] == ref for c in froms)
    assert "FROM torch2.9.1 AS vllm" in text  # what builds on the cached stage starts from it
    runtime = next(s for s in leaf.chain() if s.kind == "runtime")
    text = render(leaf, "compat", substitutes={runtime.key: ref}).text
    assert f"FROM {ref} AS runtime" in text and "_BASE_IMAGE}" not in text.split("\nFROM ", 1)[1]  # nothing below it
