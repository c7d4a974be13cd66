"""The Dagger module, offline: the SDK's own registration, and the query objects the functions build
(lazy until an engine runs them, so they can be read here without one). Where a function must talk to
an engine, the query it would send is captured instead of sent; registry operations meet a real
registry (they run in the function's own process, never as engine execs)."""

from __future__ import annotations

import json

import pytest

from tests.dagger_query import calls, decode, typedefs  # sets DAGGER_MAIN_OBJECT before dagger loads

import dagger  # noqa: E402
from dagger import dag  # noqa: E402

from runner.compose.plan import make_plan  # noqa: E402
from runner.compose.stages import Env, Run  # noqa: E402
from runner.engines.dagger import DaggerBuilder, StageContainers  # noqa: E402
from runner.model.errors import Failed, UserError  # noqa: E402
from runner.model.targets import Selection  # noqa: E402
from runner.release.provenance import EPOCH  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def defs():
    import anyio

    return anyio.run(typedefs)


@pytest.fixture
def local_source(monkeypatch, project):
    """The engine exports the module's source Directory into the function's container; offline, the
    checkout's own matrix and pack stand in for that export."""
    from runner.dagger import checkout

    async def load(source):
        return project

    monkeypatch.setattr(checkout, "load", load)


def _runner(**kw):
    from runner.dagger.module import Runner

    return Runner(source=dag.directory(), **kw)


def test_functions_args_and_docs_as_dagger_functions_shows_them(defs):
    runner = defs["objects"]["Runner"]
    selected, released = defs["objects"]["Selected"]["functions"], defs["objects"]["Released"]["functions"]
    assert {"select", "dockerfile", "base", "runtime", "service", "smoke", "prune", "job", "verify"} == set(
        runner["functions"]) - {""}
    assert {"matrix", "plan", "resolve", "build", "images", "rehearse", "drive", "with_registry"} == set(selected)
    assert {"publish", "merge", "promote", "discard", "report", "mirror", "digests"} == set(released)
    select = runner["functions"]["select"]
    assert list(select["args"]) == ["backend", "service", "backend_version", "variant", "service_version", "platform",
                                    "include_deprecated", "backend_version_prefix", "service_version_prefix",
                                    "select", "skip"]
    assert select["args"]["backend"]["type"] == "Backend?" and select["returns"] == "Selected"
    build = selected["build"]
    assert build["returns"] == "STRING_KIND" and build["description"].startswith("Build every selected target")
    assert list(build["args"]) == ["concurrency", "gpu"]
    assert selected["images"]["returns"] == "Build" and selected["with_registry"]["returns"] == "Released"
    source = runner["functions"][""]["args"]["source"]  # the constructor
    assert source["type"] == "Directory" and source["default_path"] == "/"
    assert "!pack" in source["ignore"] and "!matrix.yaml" in source["ignore"]
    assert all(a["description"] for f in runner["functions"].values() for a in f["args"].values())
    assert all(f["description"] for o in defs["objects"].values() for f in o["functions"].values())
    b = defs["objects"]["Build"]["functions"]
    assert {"report", "summary", "tarballs"} == set(b)  # publishing is `with-registry ... publish`: the registry once
    assert b["tarballs"]["returns"] == "Directory"
    for fn in (*(released[n] for n in ("publish", "merge", "promote", "discard", "mirror", "digests")),
               runner["functions"]["prune"]):
        assert fn["cache"].endswith("Never")
    # the password is a Secret wherever it is taken, never a string
    assert selected["with_registry"]["args"]["password"]["type"] == "Secret?"
    assert runner["functions"]["prune"]["args"]["password"]["type"] == "Secret"
    assert "_EXPERIMENTAL_DAGGER_GPU_SUPPORT" in build["args"]["gpu"]["description"]
    assert "not 127.0.0.1" in selected["with_registry"]["args"]["address"]["description"]
    assert defs["description"].startswith("Build, smoke-test and publish GPUStack Runner")


def test_backend_enum_follows_pack(defs, project):
    members = defs["enums"]["Backend"]["members"]
    assert sorted(m["value"] for m in members.values()) == sorted(project.recipes)
    assert members["CUDA"]["description"] == "NVIDIA CUDA" and members["CANN"]["description"] == "Ascend CANN"
    assert set(defs["enums"]["MatrixFormat"]["members"]) == {"TABLE", "JSON", "GITHUB", "GITLAB"}


def _leaves(project, **sel):
    return make_plan(Selection(**sel).apply(project.targets), project.recipes).leaves


def test_base_image_per_target_and_platform(project):
    sc = StageContainers()
    layered = project.recipes["cann"].module.OFFICIAL.layers
    leaves = _leaves(project, backend="cann", backend_version="8.5", service="vllm")
    for leaf in leaves:
        base = sc.container(leaf.stage.chain()[0])
        # a row that layers an official image starts from that image, the others from the matrix's base
        image = project.recipes["cann"].module.OFFICIAL.pinned(leaf.target) if layered(leaf.target) else leaf.target.base_image
        assert calls(base) == [("container", {"platform": leaf.platform}), ("from", {"address": image})]
    assert {layered(x.target) for x in leaves} == {True, False}


def test_steps_in_order_with_caches_env_and_entrypoint(project):
    leaf = next(x for x in _leaves(project, backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")
                if x.platform == "linux/arm64")
    chain = calls(StageContainers({"source": "https://example.com/r", "revision": "abc"}).container(leaf.stage))
    names = [n for n, _ in chain]
    assert names[:2] == ["container", "from"]
    execs = [a["args"] for n, a in chain if n == "withExec"]
    expected = [s.script for st in leaf.stage.chain() for s in st.steps if isinstance(s, Run)]
    # one exec per Run step, in plan order, run by bash -eo pipefail with the stage's ARGs exported
    assert len(execs) == len(expected)
    assert all(e[-1].endswith(s) for e, s in zip(execs, expected))
    assert all(e[:3] == ["bash", "-eo", "pipefail"] for e in execs)
    mounts = [(a["path"], decode(a["cache"])) for n, a in chain if n == "withMountedCache"]
    assert mounts and all(m[1][0]["cacheVolume"]["key"].startswith("runner-cuda-linux-arm64-") for m in mounts)
    # caches and build-stage mounts serve one step: each is unmounted after it
    assert names.count("withMountedCache") + names.count("withMountedDirectory") == names.count("withoutMount")
    assert names.count("withMountedDirectory") > 0
    env = {a["name"]: a["value"] for n, a in chain if n == "withEnvVariable"}
    assert env["VLLM_VERSION"] == "0.14.1" and env["UV_NO_CACHE"] == "1" and env["CUDA_HOME"] == "/usr/local/cuda"
    assert ("withEntrypoint", {"args": ["tini", "--"]}) in chain
    assert ("withWorkdir", {"path": "/"}) in chain
    annotations = {a["name"]: a["value"] for n, a in chain if n == "withAnnotation"}
    assert annotations["org.opencontainers.image.revision"] == "abc"
    assert annotations["org.opencontainers.image.version"] == "cuda12.8-vllm0.14.1"
    labels = {a["name"]: a["value"] for n, a in chain if n == "withLabel"}
    assert labels["io.gpustack.runner.service-version"] == "0.14.1"
    # built wheels come from the build stage's container, mounted for the install step only
    mounted = [(a["path"], decode(a["source"])[-1]) for n, a in chain if n == "withMountedDirectory"]
    assert ("/mnt/lmcache", {"directory": {"path": "/workspace/lmcache"}}) in mounted
    assert sum(isinstance(s, Env) for st in leaf.stage.chain() for s in st.steps) <= names.count("withEnvVariable")


def test_shared_stages_are_the_same_container_object(project):
    from runner.compose.plan import compose

    sc = StageContainers()
    targets = {t.service + t.service_version: t for t in Selection(backend="cuda", backend_version="12.8").apply(project.targets)}
    recipe = project.recipes["cuda"]
    vllm, voxbox = (compose(recipe, targets[n], "linux/amd64") for n in ("vllm0.14.1", "voxbox0.0.21"))
    runtime_of = lambda leaf: next(s for s in leaf.chain() if s.kind == "runtime")  # noqa: E731
    assert runtime_of(vllm).key == runtime_of(voxbox).key
    assert sc.container(runtime_of(vllm)) is sc.container(runtime_of(voxbox))
    sglang = compose(recipe, targets["sglang0.5.8"], "linux/amd64")
    assert sc.container(sglang.parent) is sc.container(vllm)  # SGLang sits on the release's vLLM 0.14.1
    arm = compose(recipe, targets["vllm0.14.1"], "linux/arm64")
    assert sc.container(runtime_of(arm)) is not sc.container(runtime_of(vllm))


def test_unchanged_inputs_give_unchanged_queries(project, local_source):
    """No clock in any stage: two runs ask the engine for exactly the same thing (so it caches)."""
    leaf = _leaves(project, backend="cuda", backend_version="12.9", service="vllm", service_version="0.14.1")[0]
    info = _runner().build_info()
    assert info["created"] == EPOCH and _runner(created="2026-01-31T00:00:00Z").build_info()["created"] != EPOCH
    first = json.dumps(decode(StageContainers(info).container(leaf.stage)), default=str)
    again = json.dumps(decode(StageContainers(_runner().build_info()).container(leaf.stage)), default=str)
    assert first == again


class Captured(Exception):
    """Raised instead of sending a query: carries what would have been sent."""


@pytest.fixture
def capture(monkeypatch):
    from dagger.client._core import Context

    sent: list = []

    async def execute(self, return_type=None):
        sent.append(list(self.selections))
        raise Captured(list(self.selections))

    monkeypatch.setattr(Context, "execute", execute)
    return sent


async def test_push_uses_the_secret_and_no_query_holds_the_password(project, capture, monkeypatch):
    import base64

    password = "hunter2-not-for-logs"
    monkeypatch.setenv("REGISTRY_PASSWORD", password)
    secret = dag.secret("env://REGISTRY_PASSWORD")
    sc = StageContainers()
    leaf = _leaves(project, backend="cuda", backend_version="12.9", service="vllm", service_version="0.14.1")[1]
    builder = DaggerBuilder(sc, "registry.example.com", "ci", secret)
    with pytest.raises(Captured) as e:
        await builder.push(sc.container(leaf.stage), "registry.example.com/gpustack/runner:cuda12.9-vllm0.14.1-linux-arm64")
    selections = e.value.args[0]
    auth = next(s for s in selections if s.name == "withRegistryAuth")
    assert auth.args["address"] == "registry.example.com" and isinstance(auth.args["secret"], dagger.Secret)
    assert selections[-1].name == "publish" and selections[-1].args["address"].endswith("-linux-arm64")
    flat = json.dumps(decode([s.args for s in selections]), default=str)
    for leak in (password, base64.b64encode(f"ci:{password}".encode()).decode()):
        assert leak not in flat
    assert not [s for s in selections if s.name == "withExec" and "skopeo" in json.dumps(s.args.get("args"))]


async def test_registry_functions_send_no_query_to_the_engine(project, local_source, registry, capture, monkeypatch):
    """merge and promote read and write the registry from the function's process: no exec, so no answer
    from the engine's cache and no credential in a layer; nothing at all is sent to the engine."""
    from runner.flow import credentials

    async def plaintext(password):
        assert isinstance(password, dagger.Secret)  # the face only ever holds the secret
        return registry.password

    monkeypatch.setattr(credentials, "plaintext", plaintext)
    secret = dag.secret("env://REGISTRY_PASSWORD")
    released = _runner().select(service="voxbox").with_registry(registry.registry, registry.username, secret, "e2e",
                                                                "runner", insecure=True)
    with pytest.raises(Failed, match="linux/amd64: not tested in run 7"):
        await released.merge(run="7")
    assert await released.merge(run="7", skip_missing=True)  # a fan-out with failed legs still merges the rest
    with pytest.raises(UserError, match="malformed run ID"):
        await released.merge(run="")
    with pytest.raises(Failed, match="not published, so nothing was promoted"):
        await released.promote(catalog=None)
    # merge, promote and discard act on whole multi-arch tags; writes need an account, reads do not
    one_platform = _runner().select(service="voxbox", platform="linux/amd64")
    with pytest.raises(UserError, match="whole multi-arch tags"):
        await one_platform.with_registry(registry.registry, registry.username, secret, insecure=True).merge(run="7")
    with pytest.raises(UserError, match="registry credentials missing"):
        await _runner().select(service="voxbox").with_registry(registry.registry, insecure=True).merge(run="7")
    # discard reaches deprecated tags too, whatever select says (as `runner discard`); the others keep to it
    everything = _runner().select().with_registry(registry.registry, registry.username, secret, insecure=True)
    assert any(t.deprecated for t in (await everything.release("discard")).targets)
    assert not any(t.deprecated for t in (await everything.release("merge")).targets)
    assert capture == []


async def test_drive_refuses_a_selection_the_release_workflow_cannot_carry_on(local_source):
    """A continuation run gets backend, service and their versions as workflow inputs, nothing else."""
    token = dag.secret("env://GITHUB_TOKEN")
    for selected in (_runner().select(variant="910b"), _runner().select(skip="*-dev"),
                     _runner().select(include_deprecated=True)):
        with pytest.raises(UserError, match="selected by backend, service and their versions only"):
            await selected.drive(token, "o/r", "main", run="7")


async def test_a_base_image_that_cannot_be_pulled_fails_its_target_only(project, monkeypatch):
    """One target's base image is unknown to its registry: that target carries the engine's error, the
    others go on to build (here: their queries reach the engine), and the report comes out."""
    import gql
    from dagger._exceptions import QueryErrorValue  # the shape the SDK gives the engine's error answers
    from dagger.client._core import Context

    from runner.release import pipeline

    leaves = _leaves(project, backend="cuda", backend_version="12.9", service="vllm", service_version="0.14.1")
    plan = make_plan(Selection(backend="cuda", backend_version="12.9", service="vllm", service_version="0.14.1")
                     .apply(project.targets), project.recipes)
    bad = leaves[0].stage.chain()[0].image
    reached: list[str] = []

    async def execute(self, return_type=None):
        froms = [s.args.get("address") for s in self.selections if s.name == "from"]
        platform = next(s.args["platform"] for s in self.selections if s.name == "container")
        if bad in froms and platform == leaves[0].platform:
            raise dagger.QueryError([QueryErrorValue(
                f'failed to resolve image "{bad}" (platform: "{platform}"): not found')], gql.GraphQLRequest("{}"))
        reached.append(platform)
        raise dagger.QueryError([QueryErrorValue("this test sends nothing further")], gql.GraphQLRequest("{}"))

    monkeypatch.setattr(Context, "execute", execute)
    built = await pipeline.build_all(plan, DaggerBuilder(StageContainers()), project.pack_path)
    by = {b.platform: b for b in built}
    assert "failed to resolve image" in by[leaves[0].platform].error and bad in by[leaves[0].platform].error
    assert leaves[1].platform in reached and "sends nothing further" in by[leaves[1].platform].error
    assert len(built) == 2


def test_failures_end_with_an_error_listing_them():
    from runner.dagger.build import summarize

    ok = {"tag": "a", "platform": "linux/amd64", "build_seconds": 1.0, "error": "", "smoke": {"passed": True, "failed": []}}
    bad = {**ok, "tag": "b", "smoke": {"passed": False, "failed": ["import-version"]}}
    assert "passed" in summarize([ok])
    with pytest.raises(Failed, match=r"(?s)b .*FAILED import-version.*b on linux/amd64: smoke checks failed: "
                                     r"import-version.*are not published"):
        summarize([ok, bad])


async def test_gpu_check_uses_daggers_gpu_support_on_cuda_and_skips_elsewhere(project, capture):
    from runner.release.pipeline import device

    leaf = _leaves(project, backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")[0]
    builder = DaggerBuilder(StageContainers())
    result = await device(builder, builder.stages.container(leaf.stage), leaf, project.pack_path)
    names = [s.name for s in capture[-1]]
    assert "experimentalWithAllGPUs" in names and not result.passed
    rocm = _leaves(project, backend="rocm", service="vllm")[0]
    skipped = await device(builder, builder.stages.container(rocm.stage), rocm, project.pack_path)
    assert skipped.skipped and skipped.passed and "runner run-command rocm" in skipped.reason


async def test_matrix_function_fan_out(project, local_source):
    from runner.dagger.args import MatrixFormat

    out = json.loads(await _runner().select().matrix(format=MatrixFormat.GITHUB))
    every = out["jobs"]
    active = [t for t in project.targets if not t.deprecated]
    # every active target and platform has its job (besides the jobs of shared stages)
    assert {(j["tag"], j["platform"]) for j in every if j["tag"]} == {(t.tag, p) for t in active for p in t.platforms}
    assert {j["runs_on"] for j in every if j["platform"] == "linux/arm64"} == {"ubuntu-22.04-arm"}
    assert out["figures"]["stage_builds"] == out["figures"]["distinct_stages"]


async def test_user_errors_are_public_errors_with_a_clear_message(local_source):
    runner = _runner()
    with pytest.raises(UserError, match="select no target"):
        await runner.select(service="sglang", backend_version="99").matrix()
    with pytest.raises(UserError, match="unknown service: 'tgi'"):
        await runner.select(service="tgi").matrix()
    with pytest.raises(UserError, match="the select pattern matches no target's tag"):
        await runner.select(select="cuda99*").plan()
    with pytest.raises(UserError, match="has no variant"):
        await runner.dockerfile("cuda12.8-910b-vllm0.9.2")


def test_the_engine_version_is_pinned_once_and_the_sdk_is_not():
    import tomllib

    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module = tomllib.loads((ROOT / ".dagger" / "pyproject.toml").read_text())
    assert not [d for d in root["dependencies"] + module["project"]["dependencies"] if d.startswith("dagger-io")
                and d != "dagger-io"]
    assert module["tool"]["uv"]["sources"]["dagger-io"] == {"path": "sdk", "editable": True}
    assert "/sdk" in (ROOT / ".dagger" / ".gitignore").read_text().split()
    lock = (ROOT / ".dagger" / "uv.lock").read_text()
    assert 'name = "dagger-io"\nversion = "0.0.0"\nsource = { editable = "sdk" }' in lock
    from importlib.metadata import version

    engine = json.loads((ROOT / "dagger.json").read_text())["engineVersion"]
    assert version("dagger-io") == engine.lstrip("v")  # the tests run the SDK release of the pinned engine


def test_verify_and_mirror_are_functions_with_secret_credentials(defs):
    runner = defs["objects"]["Runner"]["functions"]
    verify, mirror = runner["verify"], defs["objects"]["Released"]["functions"]["mirror"]
    assert verify["description"].startswith("Check each image's signed provenance and SBOM")
    assert verify["args"]["key"]["type"] == "[File]?" and verify["args"]["password"]["type"] == "Secret?"
    assert mirror["args"]["mirror_password"]["type"] == "Secret?" and mirror["args"]["to"]["type"] == "STRING_KIND"
    assert verify["cache"].endswith("Never") and mirror["cache"].endswith("Never")
    publish = defs["objects"]["Released"]["functions"]["publish"]["args"]
    assert publish["signing_key"]["type"] == publish["sigstore_token"]["type"] == "Secret?"


async def test_verify_and_mirror_talk_to_the_registry_from_the_functions_process(project, local_source, registry,
                                                                                capture, monkeypatch, tmp_path):
    """On an empty registry: verify rejects the missing image with its own error, the mirror check lists
    the tags the mirror lacks; neither sends anything to the engine."""
    from runner.flow import credentials
    from runner.release.signing import keygen
    from runner.release.verification import Rejected

    async def plaintext(password):
        assert isinstance(password, dagger.Secret)
        return registry.password

    monkeypatch.setattr(credentials, "plaintext", plaintext)
    _, public = keygen(tmp_path)

    class KeyFile:  # what the engine hands a function for a File argument, read the same way
        async def contents(self) -> str:
            return public.read_text()

    runner, secret = _runner(), dag.secret("env://REGISTRY_PASSWORD")
    with pytest.raises(Rejected, match="no such image"):
        await runner.verify([f"{registry.registry}/e2e/runner:cuda12.9-vllm0.14.1"], key=[KeyFile()],
                            username=registry.username, password=secret, insecure=True)
    with pytest.raises(UserError, match="needs whom to trust"):
        await runner.verify([f"{registry.registry}/e2e/runner:x"], insecure=True)
    with pytest.raises(Rejected, match=r'(?s)does not serve every tag.*"cuda12.9-vllm0.14.1".*"source": ""'):
        await runner.select(service="vllm", backend_version="12.9", service_version="0.14.1").with_registry(
            registry.registry, registry.username, secret, "e2e", "runner", insecure=True).mirror(
            f"{registry.registry}/mirror", registry.username, secret, check=True)
    assert capture == []


async def test_digests_pins_final_tags_and_records_a_re_push(project, local_source, registry, capture, monkeypatch):
    """After promote: the digests file pins each final tag the registry has, and a tag whose digest
    changed since the file given gets a history entry; the file comes back as the function's File."""
    from runner.flow import credentials
    from runner.release.registry import MANIFEST_TYPES, Registry

    async def plaintext(password):
        return registry.password

    monkeypatch.setattr(credentials, "plaintext", plaintext)
    tag = "cuda12.9-vllm0.14.1"
    async with Registry(registry.registry, registry.username, registry.password) as reg:
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        blob = await reg.upload_blob("e2e/runner", config)
        body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[2], "layers": [], "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob, "size": len(config)}}).encode()
        digest = await reg.put_manifest("e2e/runner", tag, body, MANIFEST_TYPES[2])
    before = {"images": {f"e2e/runner:{tag}": {"registry": registry.registry, "index": "sha256:old", "platforms": {}}},
              "history": {}}

    class Current:
        async def contents(self) -> str:
            return json.dumps(before)

    released = _runner().select(service="vllm", backend_version="12.9", service_version="0.14.1").with_registry(
        registry.registry, registry.username, dag.secret("env://REGISTRY_PASSWORD"), "e2e", "runner", insecure=True)
    out = await released.digests(current=Current())
    written = json.loads(next(a["contents"] for n, a in calls(out) if n == "withNewFile"))
    assert written["images"][f"e2e/runner:{tag}"]["index"] == digest
    (change,) = written["history"][f"e2e/runner:{tag}"]
    assert (change["old"], change["new"], change["reason"]) == ("sha256:old", digest, "re-push")
    assert capture == []
