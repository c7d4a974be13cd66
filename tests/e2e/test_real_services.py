"""The smoke specs against real services: real vLLM with its torch and Ray (and SGLang, VoxBox) from
the package index in images built on the local BuildKit, carrying the environment their matrix
target's recipe gives. `runner smoke` runs the project's real specs on them, every command line GPUStack
2.3.0 starts from the image (pack/_consumer/gpustack.json) among them; GPUStack's Ray head and worker
really start and join. See tests/e2e/standin.py for what a stand-in is and lacks.

SGLang and VoxBox are marked `realservice_extra` (CI runs them too; `pytest -m "not realservice_extra"`
leaves them out for a quicker local run). The newest rows' stand-ins are in test_real_services_more.py,
built after this module's vLLM stand-in is removed."""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest

from runner.compose.project import load_project
from runner.verify import probes
from runner.verify.consumer import probe_input
from tests.conftest import ROOT
from tests.e2e import standin
from tests.test_consumer import VLLM_DEPLOYMENTS

pytestmark = [pytest.mark.e2e, pytest.mark.realservice]

VLLM = standin.Standin("vllm", "cuda12.8-vllm0.14.1",
                       ("vllm==0.14.1", "ray[client,default]==2.60.0", "lmcache==0.3.12", "vllm-omni==0.14.0"), torch="2.9.1",
                       later=("vllm-omni==0.14.0",))

# What a stand-in cannot pass, and why: it is Debian 12 with the service installed, not the vendor
# base image plus the recipe's stages.
STANDIN_GAPS = {
    "python-version": "Debian 12's python is 3.11; the CUDA images' is 3.12 (the runtime stage adds it)",
}
# environment-places: the places these variables name come from what the stand-in does not have
STANDIN_PLACES = {
    "CUDA_HOME": "the CUDA toolkit of the vendor base image",
    "OPAL_PREFIX": "HPC-X, installed by the CUDA recipe's stages",
    "PIPX_HOME": "the runtime stage, which creates pipx's folders",
    "PIPX_LOCAL_VENVS": "the runtime stage, which creates pipx's folders",
}


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT / "matrix.yaml")


def _smoke(e2e, image: str, target: str, name: str) -> tuple[dict, str]:
    start = time.monotonic()
    r = e2e.runner("smoke", image, "--target", target, "--platform", "linux/amd64", "--report",
                   str(e2e.root / f"{name}.json"), RUNNER_MATRIX=str(ROOT / "matrix.yaml"))
    print(f"[standin] runner smoke {name}: {time.monotonic() - start:.0f} s")
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    report = json.loads((e2e.root / f"{name}.json").read_text())
    (image_report,) = report["images"]
    return image_report, r.stderr


# components: what the stand-in installs must pass; what the recipe's own stages build or download
# (HPC-X, GDRCopy, EFA, kernels built from source, CMake, uv) is not in a pip-only stand-in
STANDIN_HAS = {"vllm": ("torch", "torchvision", "vllm", "ray", "flashinfer", "lmcache", "vllm-omni"),
               "sglang": ("sglang", "torch"), "voxbox": ("vox-box", "openai-whisper"),
               # a layered row lists the image's service and the Ray it adds; the runtime stage's CMake,
               # uv and pipx are what a pip-only stand-in lacks
               "vllm-newest": ("vllm", "ray"), "sglang-newest": ("sglang", "ray")}


def _only_stand_in_gaps(image_report: dict, service: str, also: set[str] = frozenset()) -> None:
    """Every check passed but for what a stand-in lacks (and `also`, which the caller looks into)."""
    checks = {c["name"]: c for c in image_report["smoke"]["checks"]}
    failed = {n for n, c in checks.items() if not c["passed"]}
    assert failed <= set(STANDIN_GAPS) | {"environment-places", "components"} | set(also), \
        {n: checks[n]["excerpt"] for n in failed}
    summary = checks["components"]["excerpt"].splitlines()
    # versions are compared by runner (packaging), which names each mismatch in the check's reason
    wrong = {dist for dist, _, _ in re.findall(r"(\S+) is (\S+), not (\S+)", checks["components"]["reason"])}
    for name in STANDIN_HAS[service]:  # the summary lines: "name   version   ok" (or FAILED: why)
        line = next((x for x in summary if x.startswith(f"{name} ")), "")
        assert line.rstrip().endswith(" ok"), (name, checks["components"]["excerpt"][-3000:])
        assert not any(dist.startswith(name) for dist in wrong), (name, checks["components"]["reason"])
    places = checks["environment-places"]
    named = {line.split()[0] for line in places["excerpt"].splitlines() if " names " in line or " is not set" in line}
    assert named <= set(STANDIN_PLACES), places["excerpt"]
    assert "PATH lost" not in places["excerpt"]


@pytest.fixture(scope="module")
def vllm_image(e2e, project):
    image = standin.build(e2e, VLLM, standin.recipe_env(project, VLLM.target))
    yield image
    standin.remove(e2e, image)


def _cases(project, tag: str) -> dict[str, dict]:
    """The containers GPUStack starts from the target's image, as the consumer-deployments check runs them."""
    found = probe_input(project.pack_path, project.target(tag), ("tini", "--"))["cases"]
    return {c["name"]: c for c in found}


# the starts a service validates only on a CUDA device (SGLang's CPU mode refuses ngram speculative
# decoding after its parser read the line): the probe says them "not checked here", never ok
NEEDS_A_DEVICE = {"speculative-ngram"}


def _every_gpustack_start_passes(checks: dict, project, tag: str) -> set[str]:
    """The consumer-deployments check passed, each recorded start reported ok (or, for a start only a
    device can validate, not checked here); the deployments covered."""
    check = checks["consumer-deployments"]
    assert check["passed"], (check["reason"], check["excerpt"][-4000:])
    summary = check["excerpt"].splitlines()
    cases = _cases(project, tag)
    for name in cases:
        unchecked = f"{name:<28} not checked here (needs a CUDA device)"
        assert f"{name:<28} ok" in summary or (
            name.split("/")[0] in NEEDS_A_DEVICE and any(line.startswith(unchecked) for line in summary)), \
            (name, check["excerpt"][-4000:])
    return {n.split("/")[0] for n in cases} | {a.split("/")[0] for c in cases.values() for a in c.get("also", [])}


def test_the_vllm_spec_passes_on_real_vllm_but_for_what_the_stand_in_lacks(e2e, project, vllm_image):
    report, stderr = _smoke(e2e, vllm_image, VLLM.target, "vllm")
    checks = {c["name"]: c for c in report["smoke"]["checks"]}
    for must_pass in ("entrypoint", "tini", "import-version", "cli-version", "consumer-deployments", "ray",
                      "torch-version", "environment", "pip-check", "no-prereleases", "no-package-manager-cache"):
        assert checks[must_pass]["passed"], (must_pass, checks[must_pass]["reason"], checks[must_pass]["excerpt"])
    assert "0.14.1" in checks["cli-version"]["excerpt"]
    # every line GPUStack 2.3.0 starts from a CUDA vLLM 0.14.1 image, through vLLM's and Ray's own parsers
    assert VLLM_DEPLOYMENTS <= _every_gpustack_start_passes(checks, project, VLLM.target)
    _only_stand_in_gaps(report, "vllm")
    assert not checks["python-version"]["passed"] and checks["python-version"]["excerpt"].strip() == "3.11"


def _probe(e2e, image: str, cases: list[dict], model_files: dict) -> str:
    """The consumer_lines probe on hand-made cases, in the image (no network), its output."""
    script = probes.script("consumer_lines", {"cases": cases, "model_files": model_files, "hooks": probes.consumer_hooks()})
    return e2e.docker("run", "--rm", "--network", "none", image, "sh", "-c", script, check=False, timeout=1800).stdout


def _altered(case: dict, name: str, replace: dict | None = None, add: tuple = ()) -> dict:
    argv = [(replace or {}).get(a, a) for a in case["argv"]] + list(add)
    return {**case, "name": name, "argv": argv, "also": []}


def test_a_line_the_service_rejects_fails_in_the_services_own_words(e2e, project, vllm_image):
    """GPUStack's single-device line and its Ray worker line, each changed the way a GPUStack upgrade
    might: an option vLLM lacks, a value it refuses, a prefix of a real option, a port Ray refuses."""
    cases = _cases(project, VLLM.target)
    single, worker = cases["single"], cases["ray-follower"]
    altered = [
        _altered(single, "unknown-option", add=("--no-such-option",)),
        _altered(single, "bad-value", add=("--tensor-parallel-size", "two")),
        _altered(single, "prefix-option", {"--max-model-len": "--max-model"}),
        _altered(worker, "bad-port", {a: "--node-manager-port=port" for a in worker["argv"] if a.startswith("--node-manager-port=")}),
        single,
    ]
    out = _probe(e2e, vllm_image, altered, probe_input(project.pack_path, project.target(VLLM.target), ())["model_files"])
    summary = {line.split()[0]: line for line in out.splitlines()[-len(altered):]}
    assert "unrecognized arguments: --no-such-option" in summary["unknown-option"], out[-3000:]
    assert "invalid int value: 'two'" in out and "FAILED" in summary["bad-value"], out[-3000:]
    assert "not an option of the command: --max-model" in summary["prefix-option"], out[-3000:]
    assert "FAILED" in summary["bad-port"] and "'port' is not a valid integer" in out, out[-3000:]
    assert summary["single"].rstrip().endswith(" ok"), out[-3000:]


def _gpustack_container(case: dict, image: str, name: str, addresses: dict[str, str], shift: int = 0) -> list[str]:
    """docker run for a recorded container as GPUStack creates it (its entrypoint, environment, host
    network), with the worker addresses GPUStack filled in mapped to this machine's and, for a second
    node on the same machine, its Ray ports moved by `shift`."""
    text = json.dumps([case["argv"], case["env"]])
    for recorded, here in addresses.items():
        text = text.replace(recorded, here)
    argv, env = json.loads(text)
    if shift:
        argv = [a if a.startswith("--address=") or "-port=" not in a else
                f"{a.split('=')[0]}={int(a.split('=')[1]) + shift}" for a in argv]
    return ["run", "-d", "--name", name, "--network", "host", "--shm-size=2g", *[f"--env={k}={v}" for k, v in env.items()],
            "--entrypoint", argv[0], image, *argv[1:]]


def _active_nodes(status: str) -> int:
    return status.split("Active:", 1)[-1].split("Pending:", 1)[0].count("node_")


def _ray_nodes_become(e2e, head: str, gcs: str, count: int, started: str, within: float = 180) -> str:
    """Poll `ray status` in the head's container until `count` nodes are active, or until the container
    just started has exited; its last answer."""
    deadline, status = time.monotonic() + within, ""
    while time.monotonic() < deadline:
        status = e2e.docker("exec", head, "ray", "status", "--address", f"127.0.0.1:{gcs}", check=False).stdout
        if _active_nodes(status) == count:
            break
        running = e2e.docker("inspect", "--format", "{{.State.Running}}", started, check=False).stdout.strip()
        if running != "true":
            break
        time.sleep(3)
    return status


# Ray's raylet gives its dashboard agent a fixed 15 s to write its ports and aborts past it
# (NodeManager::WaitForDashboardAgentPorts); on 2 cores shared with the resolve beside, the agent's imports
# can take longer (seen once in CI). That abort, and no other failure, earns a node one more start, said.
AGENT_TOO_SLOW = "WaitForDashboardAgentPorts"


def _start_ray_node(e2e, run: list[str], head: str, gcs: str, count: int) -> str:
    """Start a node's container and wait for `count` active nodes; once more when its raylet aborted only
    because its dashboard agent was slow to start."""
    name = run[run.index("--name") + 1]
    for attempt in (1, 2):
        e2e.docker(*run)
        status = _ray_nodes_become(e2e, head, gcs, count, name)
        logs = e2e.docker("logs", name, check=False)
        if _active_nodes(status) == count or attempt == 2 or AGENT_TOO_SLOW not in logs.stdout + logs.stderr:
            return status
        print(f"[e2e] {name}: Ray's raylet aborted waiting for its dashboard agent's ports; started once more")
        e2e.docker("rm", "-f", name, check=False)
    return status


def test_gpustacks_ray_head_and_worker_start_and_join(e2e, project, vllm_image):
    """The Ray head GPUStack runs beside vLLM on the leading worker and the Ray worker it runs on a
    follower, as GPUStack creates them; both on this machine, so the follower's ports move by 1000. The
    worker starts once the head answers: a Ray worker that finds no head node in the GCS gives up, and
    on a loaded machine the head takes longer than any fixed wait."""
    cases = _cases(project, VLLM.target)
    head, worker = cases["ray-leader/ray-head"], cases["ray-follower"]
    here = {"192.168.50.10": "127.0.0.1", "192.168.50.11": "127.0.0.1"}
    gcs = next(a.split("=")[1] for a in head["argv"] if a.startswith("--port="))
    names = ("runner-ray-head", "runner-ray-worker")
    try:
        status = _start_ray_node(e2e, _gpustack_container(head, vllm_image, names[0], here), names[0], gcs, 1)
        assert "node_" in status, status + e2e.docker("logs", names[0], check=False).stdout[-4000:]
        status = _start_ray_node(e2e, _gpustack_container(worker, vllm_image, names[1], here, 1000), names[0], gcs, 2)
        assert _active_nodes(status) == 2, status + e2e.docker("logs", names[1], check=False).stdout[-2000:]
    finally:
        e2e.docker("rm", "-f", *names, check=False)


def test_the_sbom_of_real_vllm_lists_its_debian_packages_and_python_distributions(e2e, vllm_image, tmp_path):
    """What publish attaches, read from a real Debian image with real vLLM: valid SPDX (spdx-tools)."""
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    from runner.release import sbom

    start = time.monotonic()
    listing = e2e.docker("run", "--rm", "--network", "none", vllm_image, "sh", "-c", sbom.SCRIPT, timeout=600).stdout
    image_id = e2e.docker("image", "inspect", "--format", "{{.Id}}", vllm_image).stdout.strip()
    doc = sbom.document(sbom.parse(listing), [], image=f"docker.io/gpustack/runner:{VLLM.target}-linux-amd64",
                        digest=image_id, platform="linux/amd64", created="2026-01-31T00:00:00Z",
                        namespace_base="https://github.com/gpustack/runner")
    (tmp_path / "vllm.spdx.json").write_bytes(sbom.dumps(doc))
    assert validate_full_spdx_document(parse_file(str(tmp_path / "vllm.spdx.json"))) == []
    print(f"[standin] SBOM of real vLLM: {sbom.counts(doc)} in {time.monotonic() - start:.1f} s")
    versions = {p["name"].lower(): p["versionInfo"] for p in doc["packages"] if p["SPDXID"].startswith("SPDXRef-python-")}
    assert versions["vllm"] == "0.14.1" and versions["torch"].startswith("2.9.1") and versions["ray"] == "2.60.0"
    assert {"libc6", "python3"} <= set(sbom.names(doc, "deb")) and sbom.counts(doc)["python"] > 100


def test_a_vllm_image_without_the_kv_connector_fails_its_case(e2e, project, vllm_image):
    """The same image with lmcache removed: GPUStack's KV cache line still parses, but the connector it
    names no longer loads, and the check says so."""
    broken = "runner-standin/vllm-no-lmcache:latest"
    ctx = e2e.root / "no-lmcache"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {vllm_image}\nRUN python3 -m pip uninstall -y lmcache\n")
    e2e.docker("build", "-t", broken, str(ctx))
    try:
        found = probe_input(project.pack_path, project.target(VLLM.target), ("tini", "--"))
        out = _probe(e2e, broken, [c for c in found["cases"] if c["name"] == "kv-cache"], found["model_files"])
        assert "kv-cache                     FAILED: validating it fails" in out and "lmcache" in out, out[-3000:]
    finally:
        e2e.docker("rmi", "-f", broken, check=False)


DP_PORTS = """
import os, socket
from vllm.utils.network_utils import get_open_ports_list
ports = get_open_ports_list(5)
print(sorted(ports))
base = int(os.environ["VLLM_PORT"])
assert len(set(ports)) == 5 and all(base <= p < base + 10 for p in ports), ports
"""


def test_the_data_parallel_port_patch_gives_the_consumer_distinct_ports(e2e, vllm_image):
    """With VLLM_PORT set (the consumer sets it when dp > 1), vLLM 0.14.1's own get_open_ports_list never
    returns: the same probed port again and again. The project's patch (pack/_patches/vllm) makes it hand
    out distinct ports from VLLM_PORT up."""
    patch = next((ROOT / "pack" / "_patches" / "vllm").glob("0.11.2..0.14.1/*.patch"))
    script = ("cd \"$(python3 -m pip show vllm | sed -n 's/^Location: //p')\" && "
              "timeout 60 python3 -c \"$DP\"; echo \"unpatched exit $?\"; "
              "patch -p1 --forward < /dp.patch && timeout 60 python3 -c \"$DP\"; echo \"patched exit $?\"")
    out = e2e.docker("run", "--rm", "-e", "VLLM_PORT=45000", "-e", f"DP={DP_PORTS}", "-v", f"{patch}:/dp.patch:ro",
                     vllm_image, "sh", "-c", script, timeout=300).stdout
    assert "unpatched exit 124" in out, out[-2000:]  # timed out: the list never fills
    assert "patched exit 0" in out and "[45000, 45001, 45002, 45003, 45004]" in out, out[-2000:]


SGLANG = standin.Standin("sglang", "cuda12.8-sglang0.5.8", ("sglang==0.5.8",), torch="2.9.1", driver_stub=True)
# VoxBox with the CUDA recipe's pins; openai-whisper is an sdist whose build needs setuptools < 81
VOXBOX = standin.Standin("voxbox", "cuda12.8-voxbox0.0.21",
                         ("transformers==4.51.3", "numba==0.61.2", "llvmlite==0.44.0", "httpx<1.0", "vox-box==0.0.21"),
                         torch="2.7.1", build_constraints=("setuptools<81",))


def planned_standins(project) -> list[standin.Standin]:
    """The stand-ins this module builds, in the order it builds them (the session prefetches their wheels)."""
    return [VLLM, SGLANG, VOXBOX]


@pytest.mark.realservice_extra
@pytest.mark.parametrize("service", [SGLANG, VOXBOX], ids=lambda s: s.name)
def test_the_sglang_and_voxbox_specs_pass_on_the_real_services(e2e, project, service):
    image = standin.build(e2e, service, standin.recipe_env(project, service.target))
    try:
        report, _ = _smoke(e2e, image, service.target, service.name)
        _only_stand_in_gaps(report, service.name)
        checks = {c["name"]: c for c in report["smoke"]["checks"]}
        covered = _every_gpustack_start_passes(checks, project, service.target)
        if service is SGLANG:  # `sglang serve` single and across nodes, through SGLang's own parser
            assert {"single", "tp", "sglang-leader", "sglang-follower", "kv-cache", "speculative-eagle3", "lora"} <= covered
        else:  # `vox-box start --data-dir ... --device cuda:0` through tini, as GPUStack keeps the entrypoint
            assert covered == {"single"}
    finally:
        standin.remove(e2e, image)


MINDIE = "cann8.5-910b-mindie2.3.0"
MINDIE_HOME = "/usr/local/Ascend/mindie/latest/mindie-service"


def _mindie_layout(e2e, name: str, without: str = "") -> str:
    """A Debian image laid out where GPUStack's MindIE script looks (CANN's, ATB's and MindIE's
    environment scripts, the service's bin and conf folders, the daemon and GPUStack Runner's renamed
    binary), since no MindIE image can be had here; `without` leaves one of them out."""
    files = {f"/usr/local/Ascend/{p}/set_env.sh": f"export RUNNER_{i}=1\n"
             for i, p in enumerate(("ascend-toolkit", "nnal/atb", "atb-models", "mindie"))}
    files[f"{MINDIE_HOME}/conf/config.json"] = "{}\n"
    for daemon in ("mindieservice_daemon", "mindieservice_daemon_"):
        files[f"{MINDIE_HOME}/bin/{daemon}"] = "#!/bin/sh\necho serving\n"
    files.pop(without, None)
    lines = [f"FROM {standin.BASE}"]
    for p, text in files.items():  # one Dockerfile line a file: newlines go as backslash-n for printf %b
        escaped = shlex.quote(text.replace("\n", "\\n"))
        lines.append(f"RUN mkdir -p $(dirname {p}) && printf %b {escaped} > {p} && chmod 755 {p}")
    ctx = e2e.root / name.replace("/", "-").replace(":", "-")
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    e2e.docker("build", "-t", name, str(ctx))
    return name


def test_mindie_starts_the_way_gpustack_starts_it(e2e, project, vllm_image):
    """GPUStack's own MindIE script (its environment scripts sourced, its working folder, its daemon)
    on the layout the CANN recipe gives; without the renamed daemon the check says what is missing."""
    found = probe_input(project.pack_path, project.target(MINDIE), ("tini", "--"))
    assert [c["program"] for c in found["cases"]] == ["mindie", "mindie"]  # single and tp
    good = _mindie_layout(e2e, "runner-standin/mindie-layout:good")
    bad = _mindie_layout(e2e, "runner-standin/mindie-layout:bad", f"{MINDIE_HOME}/bin/mindieservice_daemon_")
    try:
        out = _probe(e2e, good, found["cases"], found["model_files"])
        assert "single                       ok" in out and "tp                           ok" in out, out[-3000:]
        out = _probe(e2e, bad, found["cases"][:1], found["model_files"])
        assert f"not an executable: {MINDIE_HOME}/bin/mindieservice_daemon_" in out and "FAILED" in out, out[-3000:]
    finally:
        e2e.docker("rmi", "-f", good, bad, check=False)
