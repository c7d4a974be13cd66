"""What GPUStack starts in our images, as pack/_consumer/gpustack.json records it from GPUStack's own
code (the record is refreshed and checked against GPUStack itself in tests/test_consumer_code.py), and
how the smoke check and `runner run-command` read it."""

from __future__ import annotations

import json
import py_compile
import shlex

import pytest

from runner.model.errors import UserError
from runner.verify import consumer, consumer_refresh
from runner.verify.consumer import load_record, load_spec, probe_input, program_of
from tests.conftest import ROOT

PACK = ROOT / "pack"
# the deployments the consumer contract must cover (issue 23), by the names deployments.yaml gives them
VLLM_DEPLOYMENTS = {"single", "tp", "ray-leader", "ray-follower", "ray-dp-leader", "ray-dp-follower", "mp-leader",
                    "mp-follower", "mp-dp-leader", "mp-dp-follower", "kv-cache", "omni", "speculative-eagle3",
                    "speculative-ngram", "speculative-mtp", "lora"}


def _cases(tag: str, project) -> dict[str, dict]:
    t = project.target(tag)
    found = probe_input(PACK, t, project.leaf_stage(tag).entrypoint())["cases"]
    return {c["name"]: c for c in found} | {alias: c for c in found for alias in c.get("also", [])}


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_gpustack_starts_every_declared_deployment_on_every_target(project):
    record, spec = load_record(PACK), load_spec(PACK)
    assert (record.gpustack, record.gpustack_runtime) == ("2.3.0", "0.2.6")
    errors = [(name, s.targets, s.error) for name, started in record.deployments.items() for s in started if s.error]
    assert not errors
    for t in project.targets:
        recorded = {name for name, _ in record.for_target(t.tag)}
        shipped = consumer_refresh_components(project, t)
        assert recorded == {d.name for d in spec.deployments if d.applies_to(t, shipped)}, t.tag
    vllm = {name for name, _ in record.for_target("cuda12.8-vllm0.14.1")}
    assert VLLM_DEPLOYMENTS <= vllm
    assert {"single", "tp", "sglang-leader", "sglang-follower"} <= {n for n, _ in record.for_target("cuda12.8-sglang0.5.8")}


def consumer_refresh_components(project, t):
    from runner.verify.probes import components

    return components(project.leaf_stage(t.tag))


def test_gpustack_replaces_the_entrypoint_of_vllm_sglang_ray_and_mindie_but_not_voxbox(project):
    vllm = _cases("cuda12.8-vllm0.14.1", project)
    assert vllm["single"]["argv"][:3] == ["vllm", "serve", "/models/model"] and vllm["single"]["program"] == "vllm"
    assert vllm["ray-leader/ray-head"]["argv"][:2] == ["ray", "start"] and "--head" in vllm["ray-leader/ray-head"]["argv"]
    assert vllm["ray-follower"]["program"] == "ray" and "--address=192.168.50.10:41000" in vllm["ray-follower"]["argv"]
    sglang = _cases("cuda12.8-sglang0.5.8", project)["single"]
    assert sglang["argv"][:4] == ["sglang", "serve", "--model-path", "/models/model"]
    voxbox = _cases("cuda12.8-voxbox0.0.21", project)["single"]
    assert voxbox["argv"][:4] == ["tini", "--", "vox-box", "start"]  # the image's entrypoint stays
    assert _arg(voxbox["argv"], "--data-dir") == "/var/lib/gpustack" and _arg(voxbox["argv"], "--device") == "cuda:0"
    mindie = _cases("cann8.5-910b-mindie2.3.0", project)["single"]
    assert mindie["program"] == "mindie" and mindie["argv"][0].startswith("/gpustack-command-")
    assert mindie["argv"][1:] == ["/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon"]
    assert mindie["cwd"] == "/usr/local/Ascend/mindie/latest/mindie-service/bin"
    script = mindie["files"][mindie["argv"][0]]
    assert script["mode"] == "0o755" and "source ${CANN_HOME}/mindie/set_env.sh" in script["content"]
    assert "/usr/local/Ascend/mindie/latest/mindie-service/conf/config.json" in mindie["files"]


def test_the_lines_carry_what_each_deployment_adds(project):
    vllm = _cases("cuda12.8-vllm0.14.1", project)
    mp = vllm["mp-follower"]["argv"]
    assert "--headless" in mp and _arg(mp, "--node-rank") == "1" and _arg(mp, "--master-addr") == "192.168.50.10"
    dp = vllm["mp-dp-follower"]["argv"]
    assert _arg(dp, "--data-parallel-start-rank") == "1" and _arg(dp, "--data-parallel-size-local") == "1"
    assert _arg(vllm["ray-dp-leader/default"]["argv"], "--data-parallel-backend") == "ray"
    assert json.loads(_arg(vllm["speculative-mtp"]["argv"], "--speculative-config"))["method"] == "mtp"
    assert json.loads(_arg(vllm["kv-cache"]["argv"], "--kv-transfer-config"))["kv_connector"] == "LMCacheConnectorV1"
    assert vllm["kv-cache"]["env"]["LMCACHE_MAX_LOCAL_CPU_SIZE"] == "64"
    lora = vllm["lora"]["argv"]
    assert _arg(lora, "--max-lora-rank") == "32" and "--enable-lora" in lora  # ranks 16 and 24, rounded up
    assert "--omni" in vllm["omni"]["argv"] and "--max-model-len" not in vllm["omni"]["argv"]
    assert vllm["single"]["env"]["CUDA_VISIBLE_DEVICES"] == "0" and vllm["single"]["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert vllm["ray-leader/default"]["env"]["RAY_LOG_TO_STDERR"] == "0"
    assert vllm["ray-leader/ray-head"]["env"]["RAY_LOG_TO_STDERR"] == "1"
    ascend = _cases("cann8.5-310p-vllm0.14.1", project)["single"]
    assert {"--enforce-eager", "--dtype"} <= set(ascend["argv"]) and ascend["env"]["TASK_QUEUE_ENABLE"] == "1"
    assert "HCCL_OP_EXPANSION_MODE" not in ascend["env"]  # not on 310P
    assert _cases("cann8.5-910b-vllm0.14.1", project)["single"]["env"]["HCCL_OP_EXPANSION_MODE"] == "AIV"
    sglang = _cases("cuda12.8-sglang0.5.8", project)
    follower = sglang["sglang-follower"]["argv"]
    assert _arg(follower, "--node-rank") == "1" and _arg(follower, "--dist-init-addr") == "192.168.50.10:40001"
    assert "--enable-hierarchical-cache" in sglang["kv-cache"]["argv"]


def test_a_start_several_deployments_share_runs_once(project):
    cases = probe_input(PACK, project.target("cuda12.8-vllm0.14.1"), ("tini", "--"))["cases"]
    keys = [json.dumps([c["argv"], c["env"], c["cwd"], c["files"]], sort_keys=True) for c in cases]
    assert len(keys) == len(set(keys))
    worker = next(c for c in cases if c["name"] == "ray-follower")
    assert worker.get("also") == ["ray-dp-follower"]  # data parallelism changes nothing on a Ray worker


@pytest.mark.parametrize("argv, program", [
    (["vllm", "serve", "/m"], "vllm"), (["/usr/local/bin/vllm", "serve"], "vllm"), (["ray", "start", "--head"], "ray"),
    (["sglang", "serve", "--model-path", "/m"], "sglang"), (["python3", "-m", "sglang.launch_server"], "sglang"),
    (["tini", "--", "vox-box", "start"], "voxbox"),
    (["/gpustack-command-1a2b", "/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon"], "mindie"),
    (["vllm", "bench"], "unknown"), ([], "unknown"),
])
def test_program_of(argv, program):
    assert program_of(argv) == program


def test_a_recorded_start_gpustack_cannot_make_fails_its_case(tmp_path, project):
    (tmp_path / "_consumer").mkdir()
    record = json.loads((PACK / "_consumer" / "gpustack.json").read_text())
    record["deployments"] = {"single": [{"targets": ["cuda12.8-vllm0.14.1"], "error": "no image"}]}
    (tmp_path / "_consumer" / "gpustack.json").write_text(json.dumps(record))
    (case,) = probe_input(tmp_path, project.target("cuda12.8-vllm0.14.1"), ())["cases"]
    assert case["problem"] == "GPUStack cannot start it: no image"


def test_the_spec_is_checked(tmp_path):
    folder = tmp_path / "_consumer"
    folder.mkdir()
    spec = folder / "deployments.yaml"
    for text, message in [
        ("deployments: [{name: a, services: [vllm]}, {name: a, services: [vllm]}]\ndevices: {}\n", "named twice"),
        ("deployments: [{name: a, services: [tgi]}]\ndevices: {}\n", "unknown service: 'tgi'"),
        ("deployments: [{name: a, services: [vllm], followers: [2], follower: 1}]\ndevices: {}\n", "records follower 1"),
        ("deployments: [{name: a, services: [vllm], model: {loras: [{name: x, rank: many}]}}]\ndevices: {}\n",
         r"deployments.0.model.loras.0.rank"),
    ]:
        spec.write_text(text)
        with pytest.raises(UserError, match=message):
            load_spec(tmp_path)


def test_record_groups_identical_starts_and_refuses_another_image(project):
    spec = load_spec(PACK)
    single = next(d for d in spec.deployments if d.name == "single")
    asked = [{"key": f"single@{tag}", "target": tag, "deployment": {"name": "single"}}
             for tag in ("cuda12.8-vllm0.14.1", "cuda12.9-vllm0.14.1", "cuda12.6-vllm0.14.1")]
    body = {"containers": [{"name": "default", "entrypoint": ["vllm", "serve"], "command": None, "working_dir": None,
                            "env": {}, "privileged": True}], "workload": {}}
    answer = {"gpustack": "2.3.0", "runtime": "0.2.6", "addresses": {"leader": "10.0.0.1", "followers": []}, "results": {
        "single@cuda12.8-vllm0.14.1": json.loads(json.dumps(body)) | {"containers": [
            body["containers"][0] | {"image": "gpustack/runner:cuda12.8-vllm0.14.1"}]},
        "single@cuda12.9-vllm0.14.1": {"containers": [body["containers"][0] | {"image": "gpustack/runner:cuda12.9-vllm0.14.1"}],
                                       "workload": {}},
        "single@cuda12.6-vllm0.14.1": {"containers": [body["containers"][0] | {"image": "gpustack/runner:cuda12.8-vllm0.14.1"}],
                                       "workload": {}},
    }}
    got = consumer_refresh.record(project, consumer.ConsumerSpec(deployments=[single], devices={}), asked, answer)
    (same, other) = got.deployments["single"]
    assert same.targets == ["cuda12.8-vllm0.14.1", "cuda12.9-vllm0.14.1"] and not same.error
    assert other.targets == ["cuda12.6-vllm0.14.1"]
    assert other.error == "GPUStack picked gpustack/runner:cuda12.8-vllm0.14.1 from our catalog, not gpustack/runner:cuda12.6-vllm0.14.1"


def test_the_harness_programs_compile():
    for program in (ROOT / "src" / "runner" / "verify" / "harness").glob("*.py"):
        py_compile.compile(str(program), doraise=True)


def test_run_command_prints_the_lines_gpustack_runs(project, tmp_path):
    from runner.cli import main
    import contextlib
    import io

    def lines(*args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["run-command", *args]) == 0
        return [shlex.split(line) for line in out.getvalue().splitlines()]

    (line,) = lines("cuda12.8-vllm0.14.1", "--devices", "2,3", "--worker-ip", "10.1.2.3")
    i = line.index("gpustack/runner:cuda12.8-vllm0.14.1")
    assert line[i - 2:i] == ["--entrypoint", "vllm"] and line[i + 1:i + 3] == ["serve", "/models/model"]
    assert _arg(line, "--host") == "10.1.2.3" and "--enable-prompt-tokens-details" in line
    envs = [a.split("=", 1)[1] for a in line if a.startswith("--env=")]
    names = [e.split("=", 1)[0] for e in envs]
    assert len(names) == len(set(names))  # no variable twice
    assert "CUDA_VISIBLE_DEVICES=2,3" in envs and "NVIDIA_VISIBLE_DEVICES=2,3" in envs  # host indices: it is privileged
    assert "OMP_NUM_THREADS=1" in envs and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in envs and "--shm-size=10g" in line
    assert "--volume=/models:/models" in line
    head, sidecar = lines("cuda12.8-vllm0.14.1", "--deployment", "ray-leader")
    assert sidecar[sidecar.index("--entrypoint") + 1] == "ray" and "--head" in sidecar
    (follower,) = lines("cuda12.8-vllm0.14.1", "--deployment", "ray-follower", "--leader-ip", "10.0.0.7")
    assert "--address=10.0.0.7:41000" in follower and "--node-ip-address=192.168.50.11" in follower
    (maca,) = lines("maca3.3-vllm0.11.2", "--devices", "1")
    names = [a.split("=", 2)[1] for a in maca if a.startswith("--env=")]
    assert names.count("CUDA_VISIBLE_DEVICES") == 1 and "--env=CUDA_VISIBLE_DEVICES=1" in maca
    (voxbox,) = lines("cuda12.8-voxbox0.0.21")
    i = voxbox.index("gpustack/runner:cuda12.8-voxbox0.0.21")
    assert "--entrypoint" not in voxbox and voxbox[i + 1:i + 3] == ["vox-box", "start"]  # through tini
    assert main(["run-command", "cann8.5-910b-mindie2.3.0"]) == 2  # GPUStack writes files: --files says where
    (mindie,) = lines("cann8.5-910b-mindie2.3.0", "--files", str(tmp_path))
    script = next(p for p in tmp_path.iterdir() if p.name.startswith("gpustack-command-"))
    assert f"--volume={script}:/{script.name}:ro" in mindie and "--workdir" in mindie
    assert main(["run-command", "cuda12.8-vllm0.14.1", "--deployment", "nope"]) == 2


def test_every_profile_explains_where_it_differs_from_gpustack_runtimes(project):
    """`runner profile --backend B --gpustack` against gpustack-runtime 0.2.6's own profile of B (as
    recorded; tests/test_consumer_code.py checks the record against gpustack-runtime itself)."""
    import subprocess
    import sys

    from runner.verify.profiles import consumer_differences, load_profile, load_runtime_profiles

    runtime = load_runtime_profiles(PACK)
    for backend in project.services:
        done = subprocess.run([sys.executable, "-m", "runner", "profile", "--backend", backend, "--gpustack", "--format",
                               "json"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert shown["gpustack_runtime"] == "0.2.6" and not shown["problems"]
        assert all(row["why"] for row in shown["differences"])
    # the variables that pick devices and the container's shared memory and privileges are GPUStack's
    cuda = load_profile(PACK, "cuda")
    assert consumer_differences(cuda, runtime, "cuda") == ({}, [])
    undeclared = cuda.model_copy(update={"shm_size_gib": 16, "env": {}})
    differ, problems = consumer_differences(undeclared, runtime, "cuda")
    assert differ == {"shm_size_gib": (16, 10), "env": ({}, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})}
    assert len(problems) == 2 and "says not why" in problems[0]
    stale = cuda.model_copy(update={"gpustack": {"runtime": "an old reason"}})
    assert consumer_differences(stale, runtime, "cuda")[1] == [
        "cuda: the profile explains a difference in runtime, but there is none (or no such field)"]


def test_a_chip_variants_hosts_add_their_own_devices_to_the_backends_lines(capsys, tmp_path):
    """The Ascend 950's UB fabric nodes are on the 950's lines only (every other chip's host lacks them,
    and docker run fails on a missing --device); a malformed variant device is refused at load."""
    from runner.cli import main
    from runner.verify.profiles import load_profile

    assert main(["run-command", "cann9.2-950-vllm0.30.0", "--device-check"]) == 0
    line = capsys.readouterr().out
    assert "--device=/dev/uburma --device=/dev/ummu" in line and "--device=/dev/davinci0" in line
    assert main(["run-command", "cann9.2-a3-vllm0.30.0", "--device-check"]) == 0
    assert "uburma" not in capsys.readouterr().out
    base, a5 = load_profile(ROOT / "pack", "cann"), load_profile(ROOT / "pack", "cann", "950")
    assert a5.devices == [*base.devices, "/dev/uburma", "/dev/ummu"] and a5.volumes == base.volumes
    (tmp_path / "cann").mkdir()
    text = (ROOT / "pack" / "cann" / "profile.yaml").read_text().replace("[/dev/uburma, /dev/ummu]", "[/dev/../etc]")
    (tmp_path / "cann" / "profile.yaml").write_text(text)
    with pytest.raises(UserError, match="malformed device path"):
        load_profile(tmp_path, "cann", "950")


def test_a_start_declared_known_to_fail_below_a_release_is_marked_for_those_images_only(project):
    """GPUStack 2.3.0 starts a cross-node mp deployment with --nnodes whatever the image's vLLM, which vLLM
    takes from 0.11.1 on (deployments.yaml, known_failure): an older image's case carries the declaration,
    a newer one's does not."""
    old = project.target("cann8.3-a3-vllm0.11.0")
    cases = {c["name"]: c for c in probe_input(PACK, old, ())["cases"]}
    assert cases["mp-leader"]["known"]["says"] == "unrecognized arguments: --nnodes"
    assert "--nnodes" in cases["mp-leader"]["argv"] and "known" in cases["mp-follower"]
    assert not any("known" in c for name, c in cases.items() if not name.startswith("mp-leader") and name != "mp-follower")
    new = project.target("cann8.5-a3-vllm0.14.1")
    assert not any("known" in c for c in probe_input(PACK, new, ())["cases"])


def test_the_probe_lets_only_the_declared_failure_pass(tmp_path):
    """The consumer_lines probe, run as in an image: a declared start that fails as declared is said and
    does not fail the check; the same start failing otherwise, or an undeclared failure, does."""
    import os
    import subprocess
    import sys

    from runner.verify.probes import script

    known = {"says": "unrecognized arguments: --nnodes", "why": "GPUStack passes --nnodes"}

    def run(*cases):
        data = {"cases": [{"name": n, "argv": [], "env": {}, "cwd": None, "files": {}, "program": "none",
                           "problem": p, **({"known": known} if k else {})} for n, p, k in cases],
                "model_files": {}, "hooks": {}}
        text = script("consumer_lines", data, sys.executable)
        env = dict(os.environ, TMPDIR=str(tmp_path))  # where its hook folder goes, to see it removed
        return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=120, env=env)

    declared = "the program ended (exit 2) before serving: vllm: error: unrecognized arguments: --nnodes 2"
    done = run(("mp-leader", declared, True))
    assert done.returncode == 0 and "known to fail (pack/_consumer/deployments.yaml): GPUStack passes" in done.stdout
    other = run(("mp-leader", "the program ended (exit 1) before serving: ImportError", True))
    assert other.returncode == 1 and "FAILED: the program ended (exit 1)" in other.stdout
    undeclared = run(("mp-leader", declared, True), ("single", declared, False))
    assert undeclared.returncode == 1 and "single" in undeclared.stdout.splitlines()[-1]
    assert not list(tmp_path.glob("runner-consumer-*"))  # the probe also runs on hosts: it leaves nothing
