"""The matrix of gpustack-runner 0.1.32.post1 (tests/fixtures/matrix-0.1.32.post1.yaml): every image its
catalog lists, planned with the project's own recipes (the rows after the seed era layer the official
images: runner.compose.official), and its catalog diffed against that wheel's own, every difference
explained in pack/_consumer/upstream-differences.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import yaml

from runner.compose import official
from runner.compose.project import _validate
from runner.compose.plan import make_plan
from runner.verify.consumer_env import UPSTREAM_RUNNER, environment
from tests.conftest import ROOT
from tests.e2e.infra import TEST_CACHE

FIXTURE = ROOT / "matrix.yaml"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def upstream_dir(tmp_path_factory):
    """The fixture matrix as a project's matrix.yaml, next to the project's own pack/."""
    folder = tmp_path_factory.mktemp("upstream")
    (folder / "matrix.yaml").write_text(FIXTURE.read_text())
    (folder / "pack").symlink_to(ROOT / "pack")
    return folder


def runner(*args, cwd=ROOT, timeout=1500):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RUNNER_NO_CACHE": "1"})


@pytest.fixture(scope="module")
def upstream_project():
    return _validate(FIXTURE, ROOT / "pack")


def test_the_upstream_matrix_plans_with_no_finding(upstream_dir):
    done = runner("plan", "--matrix", str(upstream_dir / "matrix.yaml"), "--include-deprecated", "--format", "json")
    assert "Traceback" not in done.stderr and done.returncode == 0, done.stderr[-3000:]
    assert "static checks over" in done.stderr and " 0 findings" in done.stderr, done.stderr[-2000:]


def test_rows_after_the_seed_era_layer_the_official_image_and_seed_rows_still_compile(upstream_project):
    p = upstream_project
    layered = {
        "cuda13.0-vllm0.32.0": "vllm/vllm-openai:v0.32.0-ubuntu2404",
        "cuda12.9-vllm0.27.1": "vllm/vllm-openai:v0.27.1-cu129-ubuntu2404",
        "cuda13.0-vllm0.18.1": "vllm/vllm-openai:v0.18.1-cu130",
        "cuda13.0-sglang0.5.22": "lmsysorg/sglang:v0.5.22-cu130",
        "rocm7.2-vllm0.32.0": "vllm/vllm-openai-rocm:v0.32.0",
        "rocm7.2-sglang0.5.15.post1": "lmsysorg/sglang:v0.5.15.post1-rocm720-mi30x",
        "cann9.0-910b-vllm0.20.2": "quay.io/ascend/vllm-ascend:v0.20.2rc1",
        "cann9.0-a3-vllm0.20.2": "quay.io/ascend/vllm-ascend:v0.20.2rc1-a3",
        "cann9.2-950-vllm0.30.0": "quay.io/ascend/vllm-ascend:v0.30.0rc2-950",
        "cann8.5-a3-sglang0.5.12.post1": "quay.io/ascend/sglang:v0.5.12.post1-cann8.5.0-a3",
    }
    CONNECTORS = {"rocm7.2-vllm0.32.0": {"lmcache-build", "mooncake-build"},
                  "cann9.0-910b-vllm0.20.2": {"mooncake-build", "vllm-omni-build"},
                  "cann9.0-a3-vllm0.20.2": {"mooncake-build", "vllm-omni-build"},
                  "cann9.2-950-vllm0.30.0": {"mooncake-build"},
                  # LMCache-Ascend where upstream builds it: CANN 8.5 (vLLM 0.18, SGLang 0.5.12), SGLang on 9.0
                  "cann8.5-a3-sglang0.5.12.post1": {"lmcache-ascend-build"}}
    for tag, built in {"cann8.5-910b-vllm0.18.0": {"mooncake-build", "vllm-omni-build", "lmcache-ascend-build"},
                       "cann9.0-a3-sglang0.5.15.post1": {"lmcache-ascend-build"}, "cann9.1-a3-sglang0.5.22": set(),
                       "cann8.5-310p-vllm0.18.0": {"vllm-omni-build"}, "cann8.5-a3-sglang0.5.9": set()}.items():
        assert {s.name for s in p.leaf_stage(tag).dependencies() if s.compiles} == built, tag
    for tag, image in layered.items():
        leaf = p.leaf_stage(tag)
        (base,) = [s for s in leaf.chain() if s.kind == "base"]
        assert base.image == image, tag
        scripts = "\n".join(step.script for s in leaf.chain() for step in s.steps if hasattr(step, "script"))
        assert "grep -q \"^Version: ${" in scripts, tag  # the image ships the version its tag names
        # the service is not compiled for a layered row; a ROCm or CANN vLLM row builds the connectors its
        # image lacks (no vllm-omni from vLLM 0.29 on ROCm, from 0.23 on CANN)
        assert {s.name for s in leaf.dependencies() if s.compiles} == CONNECTORS.get(tag, set()), tag
    ray = {"cuda13.0-vllm0.32.0": "2.54.0", "cann9.1-a3-vllm0.30.0": "2.48.0"}
    for tag, version in ray.items():
        text = json.dumps([str(s) for s in p.leaf_stage(tag).steps])
        assert f"ray[cgraph,client,default]=={version}" in text, tag
    for tag in ("cuda12.8-vllm0.14.1", "rocm7.0-sglang0.5.8", "cann8.5-a3-vllm0.14.1", "cann8.2-910b-mindie2.1.rc1"):
        (base,) = [s for s in p.leaf_stage(tag).chain() if s.kind == "base"]
        assert not base.image.startswith(("vllm/", "lmsysorg/", "quay.io/ascend/vllm-ascend", "quay.io/ascend/sglang")), tag
    assert any(s.compiles for s in p.leaf_stage("cuda12.8-vllm0.14.1").dependencies())


def test_a_locked_digest_is_what_builds_and_a_malformed_one_names_its_line(tmp_path, upstream_project):
    recipe = tmp_path / "cuda"
    recipe.mkdir()
    (recipe / official.LOCK_NAME).write_text(f"# reviewed\nvllm/vllm-openai:v0.32.0-ubuntu2404: {DIGEST}\n"
                                             "lmsysorg/sglang:v0.5.22-cu130: null\n")
    cuda = upstream_project.recipes["cuda"].module.OFFICIAL
    moved = official.Official(recipe, cuda.compiled, cuda.images, cuda.ray)
    t = upstream_project.target("cuda13.0-vllm0.32.0")
    assert moved.pinned(t) == f"vllm/vllm-openai:v0.32.0-ubuntu2404@{DIGEST}"
    assert moved.base(t, "linux/amd64").image.endswith(DIGEST)
    s = upstream_project.target("cuda13.0-sglang0.5.22")
    assert moved.pinned(s) == "lmsysorg/sglang:v0.5.22-cu130"  # not pinned yet: the tag alone
    assert "@" not in moved.pinned(s) and "@" in moved.pinned(t)
    (recipe / official.LOCK_NAME).write_text(f"vllm/vllm-openai:v0.32.0-ubuntu2404: {DIGEST}\nlmsysorg/sglang:v0.5.22-cu130: sha256:XYZ\n")
    official._lock.cache_clear()
    with pytest.raises(official.UserError) as e:
        moved.pinned(s)
    assert e.value.where.line == 2 and "sha256:XYZ" in str(e.value) and "64" in str(e.value)


def test_vendor_rows_start_from_their_per_service_vanilla_images(upstream_project):
    p = upstream_project
    assert p.target("dtk26.04-sglang0.5.10").base_image == "gpustack/runner:dtk26.04-sglang0.5.10rc0-python3.10-vanilla"
    assert p.target("hggc13.0-vllm0.23.0").base_image == "gpustack/runner:hggc13.0-vllm0.23.0-python3.12-vanilla"
    assert p.target("maca3.5-sglang0.5.9").original_backend_version == "3.5"
    args = {a.name: a.value for a in p.leaf_stage("hggc13.0-vllm0.23.0").args}
    assert args["VLLM_TORCH_VERSION"] == "2.10.0"  # the vendor's torch for vLLM 0.23 on HGGC 13.0
    assert {a.name: a.value for a in p.leaf_stage("maca3.7-sglang0.5.11").args}["SGLANG_TORCH_VERSION"] == "2.8.0"


@pytest.mark.consumer
def test_its_catalog_is_gpustack_runner_0_1_32_post1s_but_for_the_listed_differences(tmp_path, upstream_dir):
    python = environment(ROOT / "pack", UPSTREAM_RUNNER, TEST_CACHE / "consumer")
    packaged = next(python.parent.parent.glob("lib/python3*/site-packages/gpustack_runner/runner.py.json"))
    wheel = tmp_path / "gpustack_runner-0.1.32.post1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(packaged, "gpustack_runner/runner.py.json")
    ours = tmp_path / "catalog.json"
    done = runner("catalog", "--matrix", str(upstream_dir / "matrix.yaml"), "--write", str(ours))
    assert done.returncode == 0, done.stderr[-2000:]
    done = runner("catalog", "--diff", str(ours), str(wheel), "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    changes = json.loads(done.stdout)["changes"]
    explained = yaml.safe_load((ROOT / "pack" / "_consumer" / "upstream-differences.yaml").read_text())
    assert not [c for c in changes if c["kind"] == "added"]  # every image upstream lists is in the matrix
    assert {c["tag"] for c in changes if c["kind"] == "removed"} == set(explained["removed"])
    assert {c["tag"] for c in changes if c["kind"] == "platforms"} == set(explained["platform changes"])
    assert {c["kind"] for c in changes} <= {"removed", "platforms"}  # no deprecation differs
    theirs = {r["docker_image"] for r in json.loads(packaged.read_text())}
    assert len(theirs) == 239 and len({r["docker_image"] for r in json.loads(ours.read_text())}) == 246


def test_a_cann_vllm_row_without_its_vllm_ascend_release_is_a_clear_error(tmp_path):
    text = FIXTURE.read_text()
    assert "          vllm: [0.30.0]\n" in text
    (tmp_path / "matrix.yaml").write_text(text.replace("          vllm: [0.30.0]\n", "          vllm: [0.31.0, 0.30.0]\n", 1))
    (tmp_path / "pack").symlink_to(ROOT / "pack")
    done = runner("plan", "--matrix", str(tmp_path / "matrix.yaml"), "--backend", "cann")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "matrix.yaml:" in done.stderr and "no vllm-ascend release is declared for vLLM 0.31.0" in done.stderr
    assert "OFFICIAL_ASCEND in pack/cann/recipe.py" in done.stderr
