"""Smoke specifications and device profiles."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

import pytest

from runner.model.errors import UserError
from runner.compose.plan import make_plan
from runner.verify.profiles import load_profile, run_command
from runner.verify.smoke import Check, checks_for, load_spec
from tests.conftest import ROOT

BACKENDS = ("cann", "corex", "cuda", "dtk", "hggc", "maca", "musa", "rocm")
SERVICES = ("vllm", "sglang", "mindie", "voxbox")


def test_every_spec_and_profile_validates(project):
    for service in SERVICES:
        assert load_spec(ROOT / "pack" / "_smoke" / f"{service}.yaml").checks
    for backend in BACKENDS:
        assert load_spec(ROOT / "pack" / backend / "smoke.yaml").checks
        profile = load_profile(ROOT / "pack", backend)
        assert profile.visible_devices and profile.device_check


def test_a_bad_spec_names_file_and_line(tmp_path):
    bad = tmp_path / "smoke.yaml"
    bad.write_text("checks:\n  - name: ok\n    run: exit 0\n  - name: Bad Name\n    run: exit 0\n")
    with pytest.raises(UserError, match=rf"{re.escape(str(bad))}:4:\d+: checks.1.name"):
        load_spec(bad)
    bad.write_text("checks:\n  - name: x\n    run: exit 0\n    versoin_in: '>=1'\n")
    with pytest.raises(UserError, match=r":4:\d+: checks.0.versoin_in: Extra inputs are not permitted"):
        load_spec(bad)


def _input(script: str) -> dict:
    """The INPUT a rendered probe carries."""
    line = next(x for x in script.splitlines() if x.startswith("INPUT = "))
    return json.loads(ast.literal_eval(line[len("INPUT = "):]))


def test_every_target_gets_its_checks(project):
    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves:
        t = leaf.target
        checks = {c.name: c for c in checks_for(project.pack_path, t, leaf.stage)}
        assert {"tini", "python-version", "no-package-manager-cache", "environment", "environment-places",
                "pip-check", "no-prereleases"} <= set(checks), t.tag
        assert checks["python-version"].expect == "^" + t.python.replace(".", r"\.") + "$"
        env_script = checks["environment"].script
        assert f"{t.service.upper()}_VERSION" in env_script and "UV_NO_CACHE" in env_script
        for c in checks.values():
            compile(c.script.split("\n", 1)[1].rsplit("RUNNER_PROBE_END", 1)[0], c.name, "exec") \
                if c.script.startswith("python3 - <<") else None  # every rendered probe is valid Python
        if t.service == "vllm":
            assert re.search(checks["import-version"].expect, t.service_version)
            assert not re.search(checks["import-version"].expect, t.service_version + "9")
            assert _input(checks["cli-version"].script) == {"mode": "version"}
        # what GPUStack starts from the image, every recorded deployment of its target
        consumer = _input(checks["consumer-deployments"].script)
        names = {c["name"] for c in consumer["cases"]} | {n for c in consumer["cases"] for n in c.get("also", [])}
        assert "single" in names, t.tag
        assert all(c["program"] == t.service or (c["program"] == "ray" and t.service == "vllm")
                   for c in consumer["cases"]), t.tag
        if t.backend == "cann" and t.service == "vllm":
            assert checks["ray-pin"].version_in == ">=2.47.1,<=2.48.0"
        layered = project.recipes[t.backend].module.OFFICIAL.layers(t) if t.backend in ("cuda", "rocm", "cann") else False
        if t.backend == "cuda" and t.service == "vllm" and not layered:
            assert checks["torch-version"].expect.startswith("^2\\.")
        if layered:  # the official image keeps its own torch: no pin to check it against
            assert "torch-version" not in checks, t.tag


def _probe(tmp_path, name: str, data: dict, env: dict | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    from runner.verify import probes

    script = tmp_path / "probe.sh"
    script.write_text(probes.script(name, data, python=python))
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_the_environment_probe_finds_what_does_not_exist(tmp_path):
    (tmp_path / "home").mkdir()
    good = {"places": {"DEMO_HOME": str(tmp_path / "home")}, "path_keeps": ["/usr/bin"]}
    assert _probe(tmp_path, "env_paths", good, {"DEMO_HOME": str(tmp_path / "home")}).returncode == 0
    bad = _probe(tmp_path, "env_paths", {"places": {"OPAL_PREFIX": "/opt/hpcx/ompi"}, "path_keeps": ["/usr/bin"]},
                 {"OPAL_PREFIX": "/opt/hpcx/ompi"})
    assert bad.returncode == 1 and "OPAL_PREFIX names /opt/hpcx/ompi, which does not exist" in bad.stdout
    lost = _probe(tmp_path, "env_paths", {"places": {}, "path_keeps": ["/usr/bin", "/no/such"]})
    assert lost.returncode == 1 and "PATH lost the base image's /no/such" in lost.stdout


def test_the_prerelease_probe_lists_every_prerelease_and_allows_named_ones(tmp_path):
    site = tmp_path / "site"
    for name, version in (("alpha-pkg", "1.0rc1"), ("fine-pkg", "2.0"), ("dev-pkg", "0.1.dev3")):
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    env, isolated = {"PYTHONPATH": str(site)}, f"{sys.executable} -S"  # only the planted distributions
    out = _probe(tmp_path, "prereleases", {"allowed": []}, env, isolated)
    assert out.returncode == 1 and "alpha-pkg 1.0rc1 PRE-RELEASE" in out.stdout and "dev-pkg 0.1.dev3" in out.stdout
    assert "fine-pkg" not in out.stdout
    allowed = _probe(tmp_path, "prereleases", {"allowed": ["alpha_pkg", "dev-pkg"]}, env, isolated)
    assert allowed.returncode == 0 and "(allowed by the recipe)" in allowed.stdout


def test_a_spec_check_needs_run_or_a_known_probe(tmp_path):
    bad = tmp_path / "smoke.yaml"
    bad.write_text("checks:\n  - name: both\n    run: 'true'\n    probe: consumer_lines\n")
    with pytest.raises(UserError, match="either `run`"):
        load_spec(bad)
    bad.write_text("checks:\n  - name: x\n    probe: nope\n")
    with pytest.raises(UserError, match=r"unknown probe 'nope' \(allowed: .*consumer_lines"):
        load_spec(bad)


def test_check_judging():
    c = Check("v", "x", expect=r"^1\.2$", version_in=None)
    assert c.judge(0, "1.2\n").passed
    failed = c.judge(0, "1.3\n")
    assert not failed.passed and "does not match" in failed.reason and failed.excerpt == "1.3\n"
    assert "exit code 3" in c.judge(3, "1.2").reason
    ranged = Check("ray", "x", version_in=">=2.47.1,<=2.48.0")
    assert ranged.judge(0, "2.48.0\n").passed and not ranged.judge(0, "2.49.0").passed
    assert "no version" in ranged.judge(0, "garbage").reason


def test_run_command_follows_the_profile(project):
    cann = load_profile(project.pack_path, "cann")
    argv = run_command(cann, "img", ["true"], [4, 5], env={"ASCEND_RT_VISIBLE_DEVICES": "0", "TASK_QUEUE_ENABLE": "1"})
    assert "--device=/dev/davinci4" in argv and "--device=/dev/davinci5" in argv and "--device=/dev/davinci_manager" in argv
    # privileged: the container sees every device of the host, so the backend's variables keep host indices
    assert "--env=ASCEND_VISIBLE_DEVICES=4,5" in argv and "--env=ASCEND_RT_VISIBLE_DEVICES=4,5" in argv
    assert "--env=TASK_QUEUE_ENABLE=1" in argv and "--env=ASCEND_RT_VISIBLE_DEVICES=0" not in argv
    assert "--shm-size=10g" in argv and "--privileged" in argv and argv[-2:] == ["img", "true"]
    confined = run_command(cann.model_copy(update={"privileged": False}), "img", ["true"], [4, 5])
    assert "--env=ASCEND_RT_VISIBLE_DEVICES=0,1" in confined and "--privileged" not in confined
    cuda = run_command(load_profile(project.pack_path, "cuda"), "img", ["true"])
    assert "--runtime=nvidia" in cuda and "--env=NVIDIA_VISIBLE_DEVICES=0" in cuda
    maca = run_command(load_profile(project.pack_path, "maca"), "img", ["true"], [2, 3])
    assert [a for a in maca if a.startswith("--env=CUDA_VISIBLE_DEVICES=")] == ["--env=CUDA_VISIBLE_DEVICES=2,3"]


def test_profile_and_run_command_cli():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True)

    out = run("profile", "--backend", "rocm", "--format", "json")
    assert out.returncode == 0 and '"HIP_VISIBLE_DEVICES"' in out.stdout
    assert run("profile", "--backend", "tpu").returncode == 2
    line = run("run-command", "rocm7.0-sglang0.5.8", "--device-check").stdout
    assert line.startswith("docker run ") and "--device=/dev/kfd" in line and "torch.cuda.is_available" in line
