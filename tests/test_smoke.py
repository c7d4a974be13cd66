"""Smoke specifications, device profiles and the consumer contract of seed 002."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from runner.verify.consumer import ray_start_command, vllm_flags, vllm_serve_command
from runner.model.errors import UserError
from runner.compose.plan import make_plan
from runner.verify.profiles import load_profile, run_command, serve_command
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


def test_every_target_gets_its_checks(project):
    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves:
        checks = {c.name: c for c in checks_for(project.pack_path, leaf.target, leaf.stage)}
        assert {"tini", "python-version", "no-package-manager-cache", "environment"} <= set(checks), leaf.target.tag
        assert checks["python-version"].expect == "^" + leaf.target.python.replace(".", r"\.") + "$"
        env_script = checks["environment"].script
        assert f"{leaf.target.service.upper()}_VERSION" in env_script and "UV_NO_CACHE" in env_script
        if leaf.target.service == "vllm":
            assert re.search(checks["import-version"].expect, leaf.target.service_version)
            assert not re.search(checks["import-version"].expect, leaf.target.service_version + "9")
            for flag in vllm_flags(leaf.target.service_version):
                assert flag in checks["consumer-flags"].script
            assert "--head" in checks["ray-consumer-flags"].script
        if leaf.target.backend == "cann" and leaf.target.service == "vllm":
            assert checks["ray-pin"].version_in == ">=2.47.1,<=2.48.0"
        if leaf.target.backend == "cuda" and leaf.target.service == "vllm":
            assert checks["torch-version"].expect.startswith("^2\\.")


def test_seed_002_command_lines_per_version():
    assert vllm_serve_command("0.9.0") == ["vllm", "serve", "/models/m", "--host", "127.0.0.1", "--port", "8000",
                                           "--served-model-name", "m"]
    assert "--enable-prompt-tokens-details" in vllm_serve_command("0.9.0.1")
    assert "--disable-access-log-for-endpoints" not in vllm_serve_command("0.14.1")
    cmd = vllm_serve_command("0.16.0", distributed=True)
    assert cmd[cmd.index("--disable-access-log-for-endpoints") + 1] == "/metrics"
    assert cmd[cmd.index("--distributed-executor-backend") + 1] == "ray"
    head, worker = ray_start_command(True), ray_start_command(False)
    assert head[:2] == ["ray", "start"] and "--head" in head and "--port=40000" in head
    assert "--address=127.0.0.1:40000" in worker and "--head" not in worker


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
    t = next(x for x in project.targets if x.tag == "cann8.5-910b-vllm0.14.1")
    argv = run_command(load_profile(project.pack_path, "cann"), project.image(t.tag), serve_command(t), [4, 5])
    assert "--device=/dev/davinci4" in argv and "--device=/dev/davinci5" in argv and "--device=/dev/davinci_manager" in argv
    assert "--env=ASCEND_VISIBLE_DEVICES=4,5" in argv and "--env=ASCEND_RT_VISIBLE_DEVICES=0,1" in argv
    assert "--shm-size=100g" in argv and "--privileged" in argv
    i = argv.index("gpustack/runner:cann8.5-910b-vllm0.14.1")
    assert argv[i + 1:i + 3] == ["vllm", "serve"] and "--enable-prompt-tokens-details" in argv
    cuda = run_command(load_profile(project.pack_path, "cuda"), "img", ["true"])
    assert "--runtime=nvidia" in cuda and "--env=NVIDIA_VISIBLE_DEVICES=0" in cuda


def test_profile_and_run_command_cli():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True)

    out = run("profile", "--backend", "rocm", "--format", "json")
    assert out.returncode == 0 and '"HIP_VISIBLE_DEVICES"' in out.stdout
    assert run("profile", "--backend", "tpu").returncode == 2
    line = run("run-command", "rocm7.0-sglang0.5.8", "--device-check").stdout
    assert line.startswith("docker run ") and "--device=/dev/kfd" in line and "torch.cuda.is_available" in line
