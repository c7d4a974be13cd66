"""The smoke specs against real services: real vLLM with its torch and Ray (and SGLang, VoxBox) from
the package index in images built on the local BuildKit, carrying the environment their matrix
target's recipe gives. `runner smoke` runs the project's real specs on them; the seed-002 Ray head and
worker really start and join. See tests/e2e/standin.py for what a stand-in is and lacks.

SGLang and VoxBox are marked `realservice_extra` (CI runs them too; `pytest -m "not realservice_extra"`
leaves them out for a quicker local run)."""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest

from runner.compose.project import load_project
from runner.verify.consumer import ray_start_command
from tests.conftest import ROOT
from tests.e2e import standin

pytestmark = [pytest.mark.e2e, pytest.mark.realservice]

VLLM = standin.Standin("vllm", "cuda12.8-vllm0.14.1",
                       ("vllm==0.14.1", "ray[client,default]==2.60.0", "lmcache==0.3.12", "vllm-omni==0.14.0"), torch="2.9.1")

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
               "sglang": ("sglang", "torch"), "voxbox": ("vox-box", "openai-whisper")}


def _only_stand_in_gaps(image_report: dict, service: str) -> None:
    checks = {c["name"]: c for c in image_report["smoke"]["checks"]}
    failed = {n for n, c in checks.items() if not c["passed"]}
    assert failed <= set(STANDIN_GAPS) | {"environment-places", "components"}, {n: checks[n]["excerpt"] for n in failed}
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


def test_the_vllm_spec_passes_on_real_vllm_but_for_what_the_stand_in_lacks(e2e, vllm_image):
    report, stderr = _smoke(e2e, vllm_image, VLLM.target, "vllm")
    checks = {c["name"]: c for c in report["smoke"]["checks"]}
    for must_pass in ("entrypoint", "tini", "import-version", "cli-version", "serve-command-lines", "ray",
                      "ray-command-lines", "torch-version", "environment", "pip-check", "no-prereleases",
                      "no-package-manager-cache"):
        assert checks[must_pass]["passed"], (must_pass, checks[must_pass]["reason"], checks[must_pass]["excerpt"])
    assert "0.14.1" in checks["cli-version"]["excerpt"]
    lines = checks["serve-command-lines"]["excerpt"]
    for case in ("single", "distributed", "data-parallel", "kv-transfer", "omni"):
        assert f"{case:<16} ok" in lines, lines
    _only_stand_in_gaps(report, "vllm")
    assert not checks["python-version"]["passed"] and checks["python-version"]["excerpt"].strip() == "3.11"


def test_the_consumer_ray_head_and_worker_start_and_join(e2e, vllm_image):
    head = shlex.join(ray_start_command(True, 41000))
    worker = shlex.join(ray_start_command(False, 42000, head_port=41000))
    names = ("runner-ray-head", "runner-ray-worker")
    try:
        e2e.docker("run", "-d", "--name", names[0], "--network", "host", "--shm-size=2g", vllm_image, "sh", "-c", head)
        # a Ray worker that finds no head gives up: start it once the head answers (no fixed wait suits a loaded machine)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and e2e.docker("exec", names[0], "ray", "status", "--address",
                                                         "127.0.0.1:41000", check=False).returncode != 0:
            time.sleep(3)
        e2e.docker("run", "-d", "--name", names[1], "--network", "host", "--shm-size=2g", vllm_image, "sh", "-c", worker)
        deadline, status = time.monotonic() + 180, ""
        while time.monotonic() < deadline:
            status = e2e.docker("exec", names[0], "ray", "status", "--address", "127.0.0.1:41000", check=False).stdout
            active = status.split("Active:", 1)[-1].split("Pending:", 1)[0]
            if active.count("node_") == 2:
                break
            time.sleep(3)
        assert active.count("node_") == 2, status + e2e.docker("logs", names[1], check=False).stdout[-2000:]
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


def test_a_vllm_image_without_the_kv_connector_fails_its_case(e2e, vllm_image, tmp_path):
    """The same image with lmcache removed: the consumer's kv-transfer line still parses, but the
    connector it names no longer loads, and the check says so."""
    broken = "runner-standin/vllm-no-lmcache:latest"
    ctx = e2e.root / "no-lmcache"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {vllm_image}\nRUN python3 -m pip uninstall -y lmcache\n")
    e2e.docker("build", "-t", broken, str(ctx))
    try:
        report, _ = _smoke(e2e, broken, VLLM.target, "vllm-no-lmcache")
        checks = {c["name"]: c for c in report["smoke"]["checks"]}
        lines = checks["serve-command-lines"]["excerpt"]
        assert not checks["serve-command-lines"]["passed"]
        assert "kv-transfer      FAILED: lmcache.integration.vllm.vllm_v1_adapter does not load" in lines
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
    patch = next((ROOT / "pack" / "_patches" / "vllm").glob("0.11.2../*.patch"))
    script = ("cd \"$(python3 -m pip show vllm | sed -n 's/^Location: //p')\" && "
              "timeout 60 python3 -c \"$DP\"; echo \"unpatched exit $?\"; "
              "patch -p1 --forward < /dp.patch && timeout 60 python3 -c \"$DP\"; echo \"patched exit $?\"")
    out = e2e.docker("run", "--rm", "-e", "VLLM_PORT=45000", "-e", f"DP={DP_PORTS}", "-v", f"{patch}:/dp.patch:ro",
                     vllm_image, "sh", "-c", script, timeout=300).stdout
    assert "unpatched exit 124" in out, out[-2000:]  # timed out: the list never fills
    assert "patched exit 0" in out and "[45000, 45001, 45002, 45003, 45004]" in out, out[-2000:]


SGLANG = standin.Standin("sglang", "cuda12.8-sglang0.5.8", ("sglang==0.5.8",), torch="2.9.1")
# VoxBox with the CUDA recipe's pins; openai-whisper is an sdist whose build needs setuptools < 81
VOXBOX = standin.Standin("voxbox", "cuda12.8-voxbox0.0.21",
                         ("transformers==4.51.3", "numba==0.61.2", "llvmlite==0.44.0", "httpx<1.0", "vox-box==0.0.21"),
                         torch="2.7.1", build_constraints=("setuptools<81",))


@pytest.mark.realservice_extra
@pytest.mark.parametrize("service", [SGLANG, VOXBOX], ids=lambda s: s.name)
def test_the_sglang_and_voxbox_specs_pass_on_the_real_services(e2e, project, service):
    image = standin.build(e2e, service, standin.recipe_env(project, service.target))
    try:
        report, _ = _smoke(e2e, image, service.target, service.name)
        _only_stand_in_gaps(report, service.name)
    finally:
        standin.remove(e2e, image)
