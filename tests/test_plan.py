"""The stage plan: sharing, keys, order and the recipes' stage model."""

from __future__ import annotations

import json
import subprocess
import sys

from runner.compose.plan import make_plan
from runner.compose.stages import CopyFrom, Run
from runner.model.targets import Selection
from tests.conftest import ROOT


def test_whole_matrix_plan_shares_stages(project):
    plan = make_plan(project.targets, project.recipes)
    assert len(plan.leaves) == 404
    assert plan.naive_stages / plan.distinct_stages > 2.4
    keys = [s.key for s in plan.stages]
    assert len(set(keys)) == len(keys)
    # every stage comes after the stages it depends on
    position = {s.key: i for i, s in enumerate(plan.stages)}
    assert all(position[d.key] < position[s.key] for s in plan.stages for d in s.dependencies())


def test_runtime_is_shared_by_every_service_of_a_release_and_platform(project):
    """Among the rows that compile: a row that layers an official image has that image's runtime."""
    layered = project.recipes["cuda"].module.OFFICIAL.layers
    cuda128 = [t for t in Selection(backend="cuda", backend_version="12.8").apply(project.targets) if not layered(t)]
    assert len(cuda128) >= 10
    plan = make_plan(cuda128, project.recipes)
    runtimes = {leaf.platform: set() for leaf in plan.leaves}
    for leaf in plan.leaves:
        runtimes[leaf.platform].add(next(s.key for s in leaf.stage.chain() if s.kind == "runtime"))
    assert all(len(keys) == 1 for keys in runtimes.values()) and len(runtimes) == 2


def test_runtime_memo_gives_what_the_recipe_gives(project):
    # make_plan reuses one runtime per release; composing each target alone must agree.
    from runner.compose.plan import compose

    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves[::7]:
        assert compose(project.recipes[leaf.target.backend], leaf.target, leaf.platform).key == leaf.stage.key


def test_sglang_on_cuda_builds_on_the_releases_vllm_image(project):
    plan = make_plan(Selection(backend="cuda", backend_version="12.9").apply(project.targets), project.recipes)
    leaves = {(x.target.tag, x.platform): x.stage for x in plan.leaves}
    sglang = leaves[("cuda12.9-sglang0.5.8", "linux/amd64")]
    assert sglang.parent is not None and sglang.parent.key == leaves[("cuda12.9-vllm0.14.1", "linux/amd64")].key


def test_package_manager_steps_mount_caches(project):
    plan = make_plan(project.targets, project.recipes)
    for stage in plan.stages:
        for step in stage.steps:
            if isinstance(step, Run) and any(t in step.script for t in ("apt-get install", "uv pip install", "pip install")):
                assert step.caches, (stage.id, step.title)


def test_cache_ids_name_backend_and_platform(project):
    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves:
        for stage in leaf.stage.chain():
            for step in stage.steps:
                for cache in getattr(step, "caches", ()):
                    assert cache.id.startswith(f"runner-{leaf.target.backend}-{leaf.platform.replace('/', '-')}-")


def test_every_image_ends_with_tini_workdir_and_labels(project):
    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves:
        assert leaf.stage.entrypoint() == ("tini", "--")
        labels = dict(leaf.stage.labels)
        assert labels["io.gpustack.runner.service-version"] == leaf.target.service_version
        env = leaf.stage.env()
        assert env["UV_NO_CACHE"] == "1" and env["PIP_NO_CACHE_DIR"] == "1"
        assert env[f"{leaf.target.service.upper()}_VERSION"] == leaf.target.service_version


def test_build_stages_are_mounted_not_inherited(project):
    """Wheels built in a build stage reach the service through a one-step mount: the service never
    inherits the compilers and sources of the build stage."""
    plan = make_plan(Selection(backend="rocm").apply(project.targets), project.recipes)
    mounts = [m for s in plan.stages for st in s.steps if isinstance(st, Run) for m in st.mounts]
    assert mounts and all(m.stage.kind.endswith("-build") for m in mounts)
    for leaf in plan.leaves:
        assert all(not st.kind.endswith("-build") for st in leaf.stage.chain())


def test_plan_cli_json_shape():
    out = subprocess.run([sys.executable, "-m", "runner", "plan", "--backend", "cuda", "--format", "json"],
                         cwd=ROOT, capture_output=True, text=True)
    data = json.loads(out.stdout)
    assert data["distinct_stages"] == len(data["stages"])
    assert data["naive_stages"] > 2 * data["distinct_stages"]
    kinds = {s["kind"] for s in data["stages"]}
    assert {"base", "runtime", "service", "torch", "vllm-build"} <= kinds
    ids = {s["id"] for s in data["stages"]}
    assert all(s["parent"] is None or s["parent"] in ids for s in data["stages"])
    assert all(("tag" in s) == (s["kind"] == "service") for s in data["stages"])
    tree = subprocess.run([sys.executable, "-m", "runner", "plan", "--backend", "corex"], cwd=ROOT, capture_output=True, text=True)
    assert "corex4.2-vllm0.8.3" in tree.stdout and "runtime" in tree.stdout
