"""The small hostile inputs of the third trial: each a clear error (file, line, value, what is allowed)
with exit code 2, never a traceback and never a silent acceptance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def runner(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _first_line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip().startswith(start))


MATRIX_EDITS = {
    "a service version ending in a newline": (lambda t: t.replace("vllm: [0.14.1,", 'vllm: ["0.14.1\\n",', 1), "0.14.1\\n"),
    "a release version ending in a newline": (
        lambda t: t.replace(_first_line(t, "- version: "), _first_line(t, "- version: ").split(":")[0] + ': "4.2.0\\n"', 1),
        "4.2.0\\n"),
    "a 400-digit version": (lambda t: t.replace("vllm: [0.14.1,", f"vllm: [0.{'9' * 400},", 1), "malformed version"),
    "braces of its own in a base image": (
        lambda t: t.replace(_first_line(t, "base_image: "), _first_line(t, "base_image: ").split(":")[0] + ': "x:{{{version}"', 1),
        "no braces of its own"),
    "a python object tag": (lambda t: t.replace("namespace: gpustack", "namespace: !!python/object:os.system gpustack", 1),
                            "YAML tags are not allowed"),
}


@pytest.mark.parametrize("edit", MATRIX_EDITS)
@pytest.mark.parametrize("command", ["matrix", "plan"])
def test_hostile_matrix_values_are_clear_errors(workdir, edit, command):
    change, expected = MATRIX_EDITS[edit]
    matrix = workdir / "matrix.yaml"
    text = matrix.read_text()
    assert change(text) != text, "the edit found nothing to change"
    matrix.write_text(change(text))
    out = runner(command, "--matrix", str(matrix), cwd=workdir)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert expected in out.stderr and "matrix.yaml:" in out.stderr, out.stderr[-1500:]


@pytest.mark.parametrize("args, expected", [
    (["catalog", "--write", "/proc/runner-catalog.json"], "cannot write the catalog file"),
    (["build", "--report", "/proc/r.json", "--backend", "cuda"], "cannot write the report file"),
    (["smoke", "--target", "cuda12.8-vllm0.14.1", "--", "--privileged"], "not an image reference"),
    (["parse", "Docker.IO/gpustack/runner:cuda12.8-vllm0.14.1"], "a host name in lower case"),
    (["parse", "docker.io:99999/gpustack/runner:cuda12.8-vllm0.14.1"], "a port from 1 to 65535"),
    (["promote", "--registry", "127.0.0.1:99999", "--username", "u"], "a port from 1 to 65535"),
], ids=["catalog-proc", "report-proc", "smoke-option", "parse-case", "parse-port", "registry-port"])
def test_hostile_command_lines_are_clear_errors(args, expected):
    out = subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "REGISTRY_PASSWORD": "x", "RUNNER_DOCKER": "/bin/true"})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert expected in out.stderr, out.stderr[-1500:]


@pytest.mark.parametrize("device", ["/dev/x{index.__class__.__init__}", "/dev/x{index:>400000000}", "/dev/{0}",
                                    "/etc/passwd", "/dev/../etc/shadow"])
def test_device_templates_are_checked_when_the_profile_loads(workdir, device):
    profile = workdir / "pack" / "cann" / "profile.yaml"
    text = profile.read_text()
    profile.write_text(text.replace('"/dev/davinci{index}"', f'"{device}"', 1))
    out = runner("run-command", "cann8.5-910b-vllm0.14.1", "--matrix", str(workdir / "matrix.yaml"), cwd=workdir)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert "malformed device path" in out.stderr and "profile.yaml:" in out.stderr, out.stderr[-800:]
    assert len(out.stdout) < 10000


def test_device_indices_are_filled_in():
    out = runner("run-command", "cann8.5-910b-vllm0.14.1", "--devices", "0,3")
    assert out.returncode == 0 and "--device=/dev/davinci3" in out.stdout, out.stderr
