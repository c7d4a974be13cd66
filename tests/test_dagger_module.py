"""The Dagger module, offline: the SDK's own loader and registration, and the query objects the
functions build (lazy until an engine runs them, so they can be read here without one)."""

from __future__ import annotations

import json

import pytest

from tests.dagger_query import calls, decode, typedefs  # sets DAGGER_MAIN_OBJECT before dagger loads

import dagger  # noqa: E402
from dagger import dag  # noqa: E402

from runner.engines.dagger import DaggerBuilder, StageContainers, skopeo_runner  # noqa: E402
from runner.compose.plan import make_plan  # noqa: E402
from runner.compose.stages import Env, Run  # noqa: E402
from runner.model.targets import Selection  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def defs():
    import anyio

    return anyio.run(typedefs)


@pytest.fixture(autouse=True)
def _in_module_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the engine runs the module from its source root


async def test_functions_args_and_docs_as_dagger_functions_shows_them(defs):
    runner = defs["objects"]["Runner"]
    assert set(runner["functions"]) >= {"matrix", "plan", "dockerfile", "base", "runtime", "service", "build",
                                        "discard", "prune"}
    build = runner["functions"]["build"]
    assert build["returns"] == "Build" and build["cache"].endswith("Never")
    assert build["description"].startswith("Build every selected target")
    assert list(build["args"]) == ["backend", "service", "backend_version", "variant", "service_version", "platform",
                                   "include_deprecated", "concurrency", "gpu"]
    assert build["args"]["backend"]["type"] == "Backend?"
    assert all(a["description"] for f in runner["functions"].values() for a in f["args"].values())
    assert all(f["description"] for o in defs["objects"].values() for f in o["functions"].values())
    b = defs["objects"]["Build"]["functions"]
    assert {"publish", "promote", "export", "report", "summary"} <= set(b)
    assert b["export"]["returns"] == "Directory"
    for name in ("publish", "promote"):
        assert b[name]["cache"].endswith("Never") and b[name]["args"]["password"]["type"] == "Secret"
    for name in ("discard", "prune"):
        assert runner["functions"][name]["cache"].endswith("Never")
        assert runner["functions"][name]["args"]["password"]["type"] == "Secret"
    assert runner["functions"]["matrix"]["args"]["format"]["type"] == "MatrixFormat"
    assert defs["description"].startswith("runner: build, smoke-test and publish")


async def test_backend_enum_follows_pack(defs, project):
    members = defs["enums"]["Backend"]["members"]
    assert sorted(m["value"] for m in members.values()) == sorted(project.recipes)
    assert members["CUDA"]["description"] == "NVIDIA CUDA" and members["CANN"]["description"] == "Ascend CANN"
    assert set(defs["enums"]["MatrixFormat"]["members"]) == {"TABLE", "JSON", "GITHUB", "GITLAB"}


def _leaves(project, **sel):
    return make_plan(Selection(**sel).apply(project.targets), project.recipes).leaves


def test_base_image_per_target_and_platform(project):
    sc = StageContainers()
    for leaf in _leaves(project, backend="cann", backend_version="8.5", service="vllm"):
        base = sc.container(leaf.stage.chain()[0])
        assert calls(base) == [("container", {"platform": leaf.platform}), ("from", {"address": leaf.target.base_image})]


def test_steps_in_order_with_caches_env_and_entrypoint(project):
    leaf = next(x for x in _leaves(project, backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")
                if x.platform == "linux/arm64")
    chain = calls(StageContainers({"source": "https://example.com/r", "revision": "abc"}).container(leaf.stage))
    names = [n for n, _ in chain]
    assert names[:2] == ["container", "from"]
    execs = [a["args"] for n, a in chain if n == "withExec"]
    expected = [s.script for st in leaf.stage.chain() for s in st.steps if isinstance(s, Run)]
    # one exec per Run step, in plan order, run by bash -eo pipefail with the stage's ARGs exported
    assert [e[-1].rsplit("\n", len(s.splitlines()))[-len(s.splitlines()):] == s.splitlines() for e, s in
            zip(execs, expected)] and len(execs) >= len(expected)
    assert all(e[:3] == ["bash", "-eo", "pipefail"] for e in execs)
    mounts = [(a["path"], decode(a["cache"])) for n, a in chain if n == "withMountedCache"]
    assert mounts and all(m[1][0]["cacheVolume"]["key"].startswith("runner-cuda-linux-arm64-") for m in mounts)
    assert names.count("withMountedCache") == names.count("withoutMount")  # caches never stay mounted
    env = {a["name"]: a["value"] for n, a in chain if n == "withEnvVariable"}
    assert env["VLLM_VERSION"] == "0.14.1" and env["UV_NO_CACHE"] == "1" and env["CUDA_HOME"] == "/usr/local/cuda"
    assert ("withEntrypoint", {"args": ["tini", "--"]}) in chain
    assert ("withWorkdir", {"path": "/"}) in chain
    annotations = {a["name"]: a["value"] for n, a in chain if n == "withAnnotation"}
    assert annotations["org.opencontainers.image.revision"] == "abc"
    assert annotations["org.opencontainers.image.version"] == "cuda12.8-vllm0.14.1"
    labels = {a["name"]: a["value"] for n, a in chain if n == "withLabel"}
    assert labels["io.gpustack.runner.service-version"] == "0.14.1"
    # the wheels come from the build stage's own container
    copies = [a for n, a in chain if n == "withDirectory"]
    assert copies and decode(copies[0]["source"])[-1] == {"directory": {"path": "/workspace/wheels"}}
    assert sum(isinstance(s, Env) for st in leaf.stage.chain() for s in st.steps) <= names.count("withEnvVariable")


def test_shared_stages_are_the_same_container_object(project):
    from runner.compose.plan import compose

    sc = StageContainers()
    targets = {t.service + t.service_version: t for t in Selection(backend="cuda", backend_version="12.8").apply(project.targets)}
    recipe = project.recipes["cuda"]
    # composed separately, so the Stage objects differ; equal content gives one Container
    vllm, voxbox = (compose(recipe, targets[n], "linux/amd64") for n in ("vllm0.14.1", "voxbox0.0.21"))
    runtime_of = lambda leaf: next(s for s in leaf.chain() if s.kind == "runtime")  # noqa: E731
    assert runtime_of(vllm).key == runtime_of(voxbox).key
    assert sc.container(runtime_of(vllm)) is sc.container(runtime_of(voxbox))
    sglang = compose(recipe, targets["sglang0.5.8"], "linux/amd64")
    assert sc.container(sglang.parent) is sc.container(vllm)  # SGLang sits on the release's vLLM 0.14.1
    arm = compose(recipe, targets["vllm0.14.1"], "linux/arm64")
    assert sc.container(runtime_of(arm)) is not sc.container(runtime_of(vllm))


class Captured(Exception):
    """Raised instead of sending a query: carries what would have been sent."""


@pytest.fixture
def capture(monkeypatch):
    from dagger.client._core import Context

    async def execute(self, return_type=None):
        raise Captured(list(self.selections))

    monkeypatch.setattr(Context, "execute", execute)


async def test_publish_hands_the_platform_variants_and_a_secret(project, capture, monkeypatch):
    from runner.release.pipeline import Built

    monkeypatch.setenv("REGISTRY_PASSWORD", "hunter2-not-for-logs")
    secret = dag.secret("env://REGISTRY_PASSWORD")
    sc = StageContainers()
    images = [Built(x, sc.container(x.stage)) for x in _leaves(project, backend="cuda", backend_version="12.9",
                                                                service="vllm", service_version="0.14.1")]
    builder = DaggerBuilder(sc, "127.0.0.1:5000", "ci", secret)
    with pytest.raises(Captured) as e:
        await builder.push_index("127.0.0.1:5000/gpustack/runner:cuda12.9-vllm0.14.1-dev", images)
    selections = e.value.args[0]
    auth = next(s for s in selections if s.name == "withRegistryAuth")
    assert auth.args["address"] == "127.0.0.1:5000" and auth.args["username"] == "ci"
    assert isinstance(auth.args["secret"], dagger.Secret)
    publish = selections[-1]
    assert publish.name == "publish" and publish.args["address"].endswith(":cuda12.9-vllm0.14.1-dev")
    variants = publish.args["platformVariants"]
    assert [calls(v)[0] for v in variants] == [("container", {"platform": p}) for p in ("linux/amd64", "linux/arm64")]
    assert "hunter2-not-for-logs" not in json.dumps(decode(selections[-1:]), default=str)
    with pytest.raises(Captured) as e:
        await builder.push(images[1].handle, "127.0.0.1:5000/gpustack/runner:cuda12.9-vllm0.14.1-linux-arm64")
    assert e.value.args[0][-1].args["address"].endswith("-linux-arm64")


async def test_skopeo_runs_with_the_secret_as_a_secret_variable(capture, monkeypatch):
    monkeypatch.setenv("REGISTRY_PASSWORD", "hunter2-not-for-logs")
    run = skopeo_runner(dag.secret("env://REGISTRY_PASSWORD"), "r.example.com", "ci", insecure=False)
    with pytest.raises(Captured) as e:
        await run(["inspect", "--raw", "docker://r.example.com/a/b:c"])
    selections = e.value.args[0]
    secret_vars = [s for s in selections if s.name == "withSecretVariable"]
    assert secret_vars and isinstance(secret_vars[0].args["secret"], dagger.Secret)
    flat = json.dumps([{s.name: {k: v for k, v in s.args.items() if isinstance(v, (str, list))}} for s in selections])
    assert "hunter2" not in flat
    assert [s.args.get("args") for s in selections if s.name == "withExec"][-1][:2] == ["skopeo", "inspect"]


def test_matrix_function_fan_out(project):
    from runner.dagger.module import MatrixFormat, Runner

    out = json.loads(Runner().matrix(backend=None, service="", backend_version="", variant="", service_version="",
                                     platform="", include_deprecated=False, format=MatrixFormat.GITHUB))
    jobs = {(j["tag"], j["platform"]) for j in out["include"]}
    active = [t for t in project.targets if not t.deprecated]
    assert jobs == {(t.tag, p) for t in active for p in t.platforms}
    assert {j["runs_on"] for j in out["include"] if j["platform"] == "linux/arm64"} == {"ubuntu-22.04-arm"}


def test_user_errors_are_function_errors_without_traceback():
    from dagger.mod._exceptions import FunctionError

    from runner.dagger.module import Runner

    with pytest.raises(FunctionError, match="select no target"):
        Runner().matrix(backend=None, service="sglang", backend_version="99", variant="", service_version="", platform="",
                        include_deprecated=False)
    with pytest.raises(FunctionError, match="unknown service: 'tgi'"):
        Runner().matrix(backend=None, service="tgi", backend_version="", variant="", service_version="", platform="",
                        include_deprecated=False)
    with pytest.raises(FunctionError, match="has no variant"):
        Runner().dockerfile("cuda12.8-910b-vllm0.9.2")


def test_pins_agree():
    import tomllib

    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    dagger_pin = next(p for p in pins if p.startswith("dagger-io=="))
    engine = json.loads((ROOT / "dagger.json").read_text())["engineVersion"]
    assert engine == "v" + dagger_pin.split("==")[1]
    from importlib.metadata import version

    assert version("dagger-io") == dagger_pin.split("==")[1]


async def test_gpu_check_uses_daggers_gpu_support_on_cuda(project, capture):
    leaf = _leaves(project, backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")[0]
    builder = DaggerBuilder(StageContainers())
    with pytest.raises(Captured) as e:
        await builder.run_device_check(builder.stages.container(leaf.stage), leaf, project.pack_path)
    names = [s.name for s in e.value.args[0]]
    assert "experimentalWithAllGPUs" in names
    assert e.value.args[0][names.index("experimentalWithAllGPUs") + 1].args["args"][-1].startswith("python3 -c 'import torch")
    rocm = _leaves(project, backend="rocm", service="vllm")[0]
    code, text = await builder.run_device_check(builder.stages.container(rocm.stage), rocm, project.pack_path)
    assert code == 1 and "runner run-command rocm" in text
