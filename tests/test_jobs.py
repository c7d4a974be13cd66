"""CI jobs from the plan: each distinct stage built by one job, vLLM compiled once per distinct build,
build-cache keys that follow the stage (cross-base mounts found), each job planned in its own
selection, the release's modelled time; Dockerfiles that start from build-cache images."""

from __future__ import annotations

import dockerfile
import pytest

from runner.compose.dockerfile import render
from runner.compose.jobs import VLLM_COMPILE, ci_jobs
from runner.compose.lookup import base_stages, cache_key, lookup, stages_under
from runner.compose.plan import make_plan
from runner.model.targets import Selection
from runner.release.fanout import GITHUB_MAX_DISPATCHES


def test_each_distinct_stage_is_built_by_exactly_one_job(project):
    plan = make_plan(project.targets, project.recipes)
    jobs = ci_jobs(plan)
    built = [s.key for j in jobs.jobs for s in j.builds]
    assert len(built) == len(set(built)) == len([s for s in plan.stages if s.kind != "base"])
    figures = jobs.figures()
    assert figures["stage_builds"] == figures["distinct_stages"]
    assert figures["vllm_compiles"] == figures["distinct_vllm_compiles"] > 0
    assert figures["max_vllm_compiles_per_job"] == 1
    assert len(jobs.jobs) <= GITHUB_MAX_DISPATCHES  # what one release run's driver dispatches
    # every target and platform has its own job; a job runs after the jobs it starts from
    assert {(j.tag, j.root.platform) for j in jobs.jobs if j.tag} == {(x.target.tag, x.platform) for x in plan.leaves}
    by_key = {j.key: j for j in jobs.jobs}
    assert all(by_key[k].wave < j.wave for j in jobs.jobs for k in j.needs)
    # a layered row's runtime, which only its own connector builds mount, is built in the row's job
    row = next(j for j in jobs.jobs if j.tag == "cann9.0-910b-vllm0.20.2" and j.root.platform == "linux/arm64")
    assert {"runtime", "mooncake-build", "vllm-omni-build"} <= {s.name for s in row.builds} and not row.needs
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


def test_a_cross_base_stage_is_found_under_its_own_bases_whichever_job_looks_it_up(project):
    """CUDA 12.6 images mount a vLLM wheel built on the 12.8.1 chain: its build-cache key follows its
    own bases, so the 12.6 job finds what the wheel's job published, and the plan's figures are the
    jobs' own lookups."""
    jobs = ci_jobs(make_plan(Selection(backend="cuda").apply(project.targets), project.recipes))
    leaf = next(j for j in jobs.jobs if j.tag == "cuda12.6-vllm0.14.1" and j.root.platform == "linux/amd64")
    wheel = next(s for s in stages_under(leaf.root) if s.name == VLLM_COMPILE)
    own, other = wheel.chain()[0], leaf.root.chain()[0]
    assert own.image != other.image and base_stages(wheel) == (own,)
    digests = {b: "sha256:" + b.key for b in base_stages(leaf.root)}
    assert cache_key(wheel, {**digests, other: "sha256:refreshed"}) == cache_key(wheel, digests)
    assert cache_key(wheel, {**digests, own: "sha256:refreshed"}) != cache_key(wheel, digests)
    assert cache_key(leaf.root, {**digests, own: "sha256:refreshed"}) != cache_key(leaf.root, digests)  # it mounts it
    runs = dict(zip((j.key for j in jobs.jobs), jobs.simulate()))
    assert wheel.key in jobs.shared() and wheel in runs[leaf.key].found and wheel not in runs[leaf.key].build
    assert all({s.key for s in runs[j.key].build} == {s.key for s in j.builds} for j in jobs.jobs)
    figures = jobs.figures()
    assert figures["stage_builds"] == figures["distinct_stages"] and figures["inputs_missing"] == 0
    assert figures["cross_base_edges"] > 0


def test_a_lookup_never_builds_another_jobs_stage(project):
    jobs = ci_jobs(make_plan(Selection(backend="cuda", backend_version="12.8").apply(project.targets), project.recipes))
    job = next(j for j in jobs.jobs if j.tag and j.needs)
    found = lookup(job.root, lambda s: False, job.needs)  # an empty cache: every input's job failed
    assert {s.key for s in found.missing} == set(job.needs) and found.found == []
    assert {s.key for s in found.build} == {s.key for s in job.builds}
    dry = lookup(job.root, lambda s: False)  # a dry run builds them itself
    assert not dry.missing and len(dry.build) == len(stages_under(job.root))


def test_a_job_is_planned_in_the_selection_it_was_emitted_from(project):
    from runner.release import fanout
    from runner.release.ci_job import find_job

    sglang = Selection(backend="cuda", service="sglang")
    jobs = ci_jobs(make_plan(sglang.apply(project.targets), project.recipes))
    everything = ci_jobs(make_plan(project.targets, project.recipes))
    vllm_image = [j for j in jobs.jobs if j.root.tag == "cuda12.8-vllm0.14.1"]
    # SGLang's base image is a target of the whole matrix, and a stage of the SGLang selection
    assert len(vllm_image) == 2 and all(not j.tag for j in vllm_image)
    assert all(everything.find(j.key[:16]).tag == "cuda12.8-vllm0.14.1" for j in vllm_image)
    ci = find_job(project, sglang, vllm_image[0].key[:16])
    assert ci.leaf is None and ci.job.key == vllm_image[0].key
    entries = fanout.github(jobs, sglang)["jobs"]
    assert {e["selection"] for e in entries} == {sglang.to_json()} and Selection.from_json(sglang.to_json()) == sglang
    child = fanout.gitlab(jobs, sglang)
    assert {v["variables"]["RUNNER_JOB_SELECTION"] for k, v in child.items() if k not in ("include", "stages", "merge",
                                                                                             "promote")} == {sglang.to_json()}


def test_the_modelled_release_time_is_a_dag_schedule(project):
    from runner.compose.schedule import job_minutes, model

    jobs = ci_jobs(make_plan(project.targets, project.recipes))
    total = sum(job_minutes(j) for j in jobs.jobs)
    one, unlimited = model(jobs, 1), model(jobs, 100_000)
    assert one.dag == one.waves == total
    assert unlimited.dag == unlimited.critical_path < unlimited.waves  # wave barriers cost hours
    for n in (4, 20, 60):
        m = model(jobs, n)
        assert m.critical_path <= m.dag <= m.waves and m.dag >= total / n


def test_a_dockerfile_builds_each_chain_on_its_own_base_and_labels_a_cached_target(project):
    leaf = project.leaf_stage("cuda12.6-vllm0.14.1", "linux/amd64")
    froms = [c for c in dockerfile.parse_string(render(leaf, "compat").text) if c.cmd == "FROM"]
    other = next(c for c in froms if c.value[-1] == "runtime-2")  # the 12.8.1 chain the kernels are built on
    assert other.value[0] == "nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04"
    assert "ARG CUDA_VERSION=12.8.1\n" in render(leaf, "compat").text.split("AS runtime-2\n", 1)[1]
    ref = "127.0.0.1:5000/gpustack/runner-build-cache:abc"
    text = render(leaf, "compat", substitutes={leaf.key: ref}).text
    assert f"FROM {ref} AS vllm" in text and "org.opencontainers.image.revision=${BUILD_REVISION}" in text


def test_plan_ci_prints_the_modelled_release_time_with_its_assumptions(capsys):
    from runner.cli import main

    assert main(["plan", "--ci", "--backend", "cuda", "--runners", "4"]) == 0
    out = capsys.readouterr().out
    assert "modelled release time on 4 runners:" in out and " h as a DAG" in out and "critical path" in out
    assert "assumed minutes: runtime 5, vllm compile 90" in out
    with pytest.raises(SystemExit) as e:  # argparse's own exit for a value out of range
        main(["plan", "--ci", "--runners", "0"])
    assert e.value.code == 2


def test_a_job_with_a_malformed_selection_is_a_clear_error(capsys):
    from runner.cli import main

    assert main(["job", "0123456789abcdef", "--selection", '{"backend": 1}']) == 2
    assert "malformed selection" in capsys.readouterr().err


async def test_two_docker_builds_at_once_never_run_a_shared_stage_twice(project):
    """Separate `docker build`s do not share a running step: a build waits while another one makes a
    stage it needs (here the CUDA 12.8 runtime), and builds freely once that is made."""
    import anyio

    from runner.engines.docker import Docker, DockerBuilder

    layered = project.recipes["cuda"].module.OFFICIAL.layers  # those have the official image's own runtime
    leaves = [x for x in make_plan(Selection(backend="cuda", backend_version="12.8", service="vllm").apply(
        project.targets), project.recipes).leaves if x.platform == "linux/amd64" and not layered(x.target)][:3]
    events = []
    with Docker() as docker:
        builder = DockerBuilder(docker, {})
        try:
            async def build(n: int, leaf) -> None:
                async with builder._claim(leaf.stage):
                    events.append(("start", n))
                    await anyio.sleep(0.05)
                    events.append(("end", n))

            async with anyio.create_task_group() as tg:
                for n, leaf in enumerate(leaves[:2]):
                    tg.start_soon(build, n, leaf)
            assert events == [("start", 0), ("end", 0), ("start", 1), ("end", 1)]  # the second waited
            events.clear()
            async with anyio.create_task_group() as tg:  # the shared stages are made: at once now
                tg.start_soon(build, 1, leaves[1])
                tg.start_soon(build, 2, leaves[2])
            assert [e for e, _ in events] == ["start", "start", "end", "end"]
        finally:
            builder.close()
