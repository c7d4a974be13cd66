"""Build failures said once per cause, with advice that fits the cause: no engine is one line before
anything builds; a base image that cannot be pulled is one line naming its registry, however many
images need it, and never sends anyone to pack/; a recipe's failure does; build time leaves out the
time an image waited for a free lane."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runner.compose.plan import make_plan
from runner.engines.docker import base_failure
from runner.model.errors import InfrastructureError
from runner.release import pipeline
from runner.release.pipeline import BaseUnavailable, classify
from runner.ui.failures import BASE_ADVICE, RECIPE_ADVICE, failure_lines
from tests.conftest import ROOT

# BuildKit's plain progress (Docker 20.10) for a FROM image whose registry cannot be reached, as a
# private daemon without a route to Docker Hub printed it
UNREACHABLE = """\
#3 [internal] load metadata for docker.io/ascendai/cann:8.2.rc1-910b-ubuntu22.04-py3.11
#3 sha256:fb20ff16d618982939bb8d394f4f1c19aa55056460f69085286b326a08f6d88e
#3 ERROR: failed to do request: Head "https://registry-1.docker.io/v2/ascendai/cann/manifests/8.2.rc1-910b-ubuntu22.04-py3.11": dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: no such host
------
 > [internal] load metadata for docker.io/ascendai/cann:8.2.rc1-910b-ubuntu22.04-py3.11:
------
failed to solve with frontend dockerfile.v0: failed to create LLB definition: failed to do request: Head "https://registry-1.docker.io/v2/ascendai/cann/manifests/8.2.rc1-910b-ubuntu22.04-py3.11": dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: no such host
"""


def test_buildkit_progress_names_the_base_as_the_recipe_does():
    found = base_failure(UNREACHABLE, ["ascendai/cann:8.2.rc1-910b-ubuntu22.04-py3.11", "ubuntu:22.04"])
    assert isinstance(found, BaseUnavailable)
    assert found.image == "ascendai/cann:8.2.rc1-910b-ubuntu22.04-py3.11"
    assert found.reason == "dial tcp: lookup registry-1.docker.io on 127.0.0.53:53: no such host"
    assert classify(found) == ("base image", found.image)
    step_failed = "#7 [runtime 2/5] RUN false\n#7 ERROR: executor failed running [/bin/sh -c false]: exit code: 1\n"
    assert base_failure(step_failed, ["ubuntu:22.04"]) is None  # a RUN step's failure is the recipe's


@pytest.mark.parametrize("error,cause", [
    (pipeline.BuildError("executor failed running [/bin/bash -c uv pip install x]: exit code: 1"), "recipe"),
    (pipeline.BuildError("docker build failed: Cannot connect to the Docker daemon at unix:///x.sock. Is the "
                         "docker daemon running?"), "engine"),
    (InfrastructureError("docker push r/x:1 failed 4 times: 503"), "registry"),
    (RuntimeError("failed to resolve source metadata for docker.io/x/y:1: no route"), "base image"),
])
def test_each_error_gets_its_cause(error, cause):
    assert classify(error)[0] == cause


def _image(tag: str, platform: str = "linux/amd64", error: str = "", cause: str = "", base: str = "",
           failed=()) -> dict:
    return {"tag": tag, "platform": platform, "error": error, "cause": cause, "base_image": base,
            "smoke": {"passed": not error and not failed, "failed": list(failed)}}


def test_one_line_per_unpullable_base_naming_its_registry_and_no_recipe_advice():
    images = []
    for n in range(22):  # the case: 68 images over 22 vendor bases no route reaches
        base = f"quay.io/ascend/cann:8.{n}" if n % 2 else f"ascendai/cann:8.{n}"
        error = str(BaseUnavailable(base, "dial tcp: no such host"))
        for k in range(4 if n < 2 else 3):
            images.append(_image(f"cann8.{n}-910b-vllm0.9.{k}", ("linux/amd64", "linux/arm64")[k % 2], error,
                                 "base image", base))
    assert len(images) == 68
    lines = failure_lines(images)
    bases = {i["base_image"] for i in images}
    assert len(lines) == len(bases) + 1 and lines[-1].startswith(BASE_ADVICE.split(";")[0])
    assert "docker.io/ascendai: MIRROR/ascendai, quay.io/ascend: MIRROR/ascend" in lines[-1]
    for base in bases:
        (line,) = [x for x in lines if x.startswith(f"base image {base} ")]
        registry = "quay.io" if base.startswith("quay.io/") else "docker.io"
        assert f"could not be pulled from {registry}: dial tcp: no such host (" in line
        assert line.count("cannot pull") == 0  # the engine's wording is not said twice
    assert "pack/" not in "\n".join(lines) and "recipe" not in lines[0]
    assert lines[0].endswith("(4 images not built: cann8.0-910b-vllm0.9.0 on linux/amd64, cann8.0-910b-vllm0.9.1 on "
                             "linux/arm64, cann8.0-910b-vllm0.9.2 on linux/amd64 and 1 more)")


def test_recipe_failures_name_each_image_once_and_send_to_pack():
    images = [_image("cuda12.8-vllm0.14.1", error="executor failed running [uv pip install]: exit code: 1",
                     cause="recipe"),
              _image("cuda12.8-sglang0.5.6", failed=["version", "components"]),
              _image("cuda12.6-vllm0.14.1")]
    lines = failure_lines(images)
    assert lines == ["cuda12.8-vllm0.14.1 on linux/amd64: executor failed running [uv pip install]: exit code: 1",
                     "cuda12.8-sglang0.5.6 on linux/amd64: smoke checks failed: version, components",
                     RECIPE_ADVICE]
    assert "pack/" in RECIPE_ADVICE


def test_mixed_causes_come_infrastructure_first():
    images = [_image("a1-x0.1", error="boom", cause="recipe"),
              _image("b1-x0.1", error="docker build: Cannot connect to the Docker daemon", cause="engine"),
              _image("b2-x0.1", error="docker build: Cannot connect to the Docker daemon", cause="engine")]
    lines = failure_lines(images)
    assert lines[0].startswith("the container engine stopped answering") and "2 images not built" in lines[0]
    assert lines[2:] == ["a1-x0.1 on linux/amd64: boom", RECIPE_ADVICE]


class ClockedEngine:
    """Each build takes 10 units of a clock only builds move: what a build measures beyond 10 is queue."""

    name = "clocked"

    def __init__(self) -> None:
        self.now = 0.0

    async def build(self, leaf):
        import anyio

        await anyio.sleep(0)
        self.now += 10
        raise pipeline.BuildError("no image here: the clock is what this engine is for")


async def test_build_seconds_leave_out_the_wait_for_a_lane(project, monkeypatch):
    engine = ClockedEngine()
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: engine.now)
    plan = make_plan([t for t in project.targets if t.backend == "cuda"][:3], project.recipes)
    built = await pipeline.build_all(plan, engine, project.pack_path, limit=1)
    assert len(built) >= 3 and [b.seconds for b in built] == [10.0] * len(built)


def run_runner(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/runner-test.sock", **env}, timeout=120)


def _a_job_key() -> str:
    out = subprocess.run([sys.executable, "-m", "runner", "plan", "--ci", "--format", "json", "--backend", "corex"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["jobs"][0]["key"]


@pytest.mark.parametrize("command", ["build", "job", "publish", "smoke", "rehearse"])
def test_no_engine_is_one_line_before_anything_builds(command):
    args = {"build": ["build", "--backend", "cann"],
            "job": ["job", _a_job_key() if command == "job" else "", "--build-cache", "127.0.0.1:9/ns/cache", "--dry-run"],
            "publish": ["publish", "--backend", "cann", "--registry", "127.0.0.1:9", "--username", "u"],
            "smoke": ["smoke", "gpustack/runner:cuda12.8-vllm0.14.1"],
            "rehearse": ["rehearse", "--backend", "corex"]}[command]
    out = run_runner(*args, REGISTRY_PASSWORD="not-used")
    assert out.returncode == InfrastructureError.exit_code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("runner: infrastructure error: no container engine at "
                               "unix:///nonexistent/runner-test.sock: Cannot connect to the Docker daemon")
    assert "DOCKER_HOST" in lines[0] and "pack/" not in lines[0] and out.stdout == ""


def test_the_advice_names_the_mirror_setting_that_redirects_each_base():
    base = "ascendai/cann:8.2.rc1-910b-ubuntu22.04-py3.11"
    images = [_image("cann8.2-910b-vllm0.9.2", error=str(BaseUnavailable(base, "no such host")), cause="base image",
                     base=base), _image("x1-y0.1", error=str(BaseUnavailable("ubuntu:22.04", "no route")),
                                        cause="base image", base="ubuntu:22.04")]
    advice = failure_lines(images)[-1]
    assert "`mirrors:` (docker.io/ascendai: MIRROR/ascendai, docker.io/library: MIRROR/library)" in advice
    assert "$RUNNER_MIRRORS (docker.io/ascendai=MIRROR/ascendai docker.io/library=MIRROR/library)" in advice


def test_an_image_prefix_in_the_mirror_map_redirects_base_images_and_nothing_else(project):
    from runner.compose.dockerfile import render
    from runner.compose.mirrors import mirrors

    mapped = mirrors({"quay.io/ascend": "mirror.example:5000/ascend", "docker.io/nvidia": "mirror.example/hub/nvidia"},
                     {"RUNNER_MIRRORS": "https://download.pytorch.org/whl=https://mirror.example/whl"})
    assert mapped.image("quay.io/ascend/cann:8.5.0") == "mirror.example:5000/ascend/cann:8.5.0"
    assert mapped.image("nvidia/cuda:12.8.1-devel") == "mirror.example/hub/nvidia/cuda:12.8.1-devel"
    assert mapped.image("docker.io/nvidia/cuda:12.8.1") == "mirror.example/hub/nvidia/cuda:12.8.1"
    assert mapped.image("quay.io/ascendai/cann:8.2") == "quay.io/ascendai/cann:8.2"  # whole path parts only
    assert mapped.image("rocm/dev-ubuntu-22.04:7.0") == "rocm/dev-ubuntu-22.04:7.0"
    one = mirrors({"docker.io/rocm/dev-ubuntu-22.04": "mirror.example/rocm-dev"}, {})  # one repository
    assert one.image("rocm/dev-ubuntu-22.04:7.0") == "mirror.example/rocm-dev:7.0"
    assert one.image("rocm/dev-ubuntu-22.04@sha256:" + "a" * 64) == "mirror.example/rocm-dev@sha256:" + "a" * 64
    assert one.image("rocm/dev-ubuntu-22.04-x:7.0") == "rocm/dev-ubuntu-22.04-x:7.0"
    assert mapped.text("see quay.io/ascend/cann") == "see quay.io/ascend/cann"  # scripts keep their text
    assert mapped.url("https://download.pytorch.org/whl/cu128") == "https://mirror.example/whl/cu128"
    leaves = {x.target.tag: x for x in make_plan(project.targets, project.recipes).leaves if x.target.backend == "cann"}
    for tag, image in (("cann8.5-a3-vllm0.14.1", "mirror.example:5000/ascend/cann:"),  # the CANN image
                       ("cann9.2-a3-vllm0.30.0", "mirror.example:5000/ascend/vllm-ascend:v0.30.0rc2-a3")):  # an official one
        (arg,) = [line for line in render(leaves[tag].stage, "compat", mapped).text.splitlines()
                  if line.startswith("ARG ") and "_BASE_IMAGE=" in line]
        assert arg.split("=", 1)[1].split()[0].startswith(image), arg


@pytest.mark.parametrize("env,message", [
    ("docker.io/ascendai=https://mirror.example/x", "URL=URL, or image prefix=image prefix"),
    ("Docker.io/ascendai=mirror.example/ascend", "malformed mirrored prefix 'Docker.io/ascendai'"),
    ("docker.io/ascendai=mirror.example/ascend:8.2", "malformed mirror 'mirror.example/ascend:8.2'"),
])
def test_a_malformed_image_mirror_is_a_clear_error(env, message):
    from runner.compose.mirrors import mirrors
    from runner.model.errors import UserError

    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
        mirrors({}, {"RUNNER_MIRRORS": env})


def test_a_base_with_no_namespace_is_advised_by_its_repository():
    """A vendor base such as vendor.invalid/base:1.0.0 has no namespace: its mirror entry is the
    repository (the advice once failed on it with an IndexError, printed as a traceback)."""
    base = "vendor.invalid/base:1.0.0"
    lines = failure_lines([_image("vendor1.0-echo0.1.0", error=str(BaseUnavailable(base, "no such host")),
                                  cause="base image", base=base)])
    assert "vendor.invalid/base: MIRROR/base" in lines[-1] and "vendor.invalid/base=MIRROR/base" in lines[-1]


def test_an_error_a_task_group_collected_is_described_as_itself():
    group = ExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("inner", [BrokenPipeError(32, "Broken pipe")])])
    said = pipeline.describe(group)
    assert said == "BrokenPipeError: [Errno 32] Broken pipe"
    assert "TaskGroup" not in pipeline.describe(ExceptionGroup("x", [pipeline.BuildError("the build failed")]))
