"""Steps of the rows that layer an official image, run as rendered: the CUDA vLLM rows' "one CuPy" step
on a Debian image that holds what Ray's install leaves in vLLM's CUDA 13 image (cupy-cuda13x, then
cupy-cuda12x over it), with uv and the real package index."""

from __future__ import annotations

import pytest

from runner.compose.project import load_project
from runner.compose.stages import Run, dependencies_first
from tests.conftest import ROOT
from tests.e2e import standin

pytestmark = [pytest.mark.e2e, pytest.mark.realservice]
CUPY = "14.2.0"  # a release both CuPy distributions have


def _step(tag: str, title: str) -> str:
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage(tag, "linux/amd64")
    (script,) = [s.script for stage in dependencies_first(leaf) for s in stage.steps
                 if isinstance(s, Run) and s.title == title]
    return script


def _run(e2e, script: str) -> str:
    """The script with bash -eo pipefail (the Dockerfile's shell) after CuPy is installed the way the
    image and Ray's install leave it; then which CuPy is installed and whether it imports."""
    setup = (f"python3 -m pip install -q uv cupy-cuda13x=={CUPY}\n"
             f"python3 -m pip install -q cupy-cuda12x=={CUPY}\n")
    after = ("\necho '--- after'\npython3 -m pip list 2>/dev/null | grep -i '^cupy'\n"
             "python3 -c 'import cupy, cupy_backends; print(\"imports\", cupy.__version__)'\n")
    done = e2e.docker("run", "--rm", "--network", "host", "-v", f"{standin.HOST_CA}:/etc/runner-ca.crt:ro",
                      "-e", "PIP_CERT=/etc/runner-ca.crt", "-e", "SSL_CERT_FILE=/etc/runner-ca.crt",
                      "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1", "-e", "UV_SYSTEM_PYTHON=1", "-e", "UV_BREAK_SYSTEM_PACKAGES=1",
                      "--entrypoint", "bash", standin.BASE, "-eo", "pipefail", "-c",
                      "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED\n" + setup + script + after,
                      check=False, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout.split("--- after", 1)[1]


def test_one_cupy_keeps_the_rows_cuda_release_at_the_images_version(e2e):
    standin.ensure_base(e2e)
    out = _run(e2e, _step("cuda13.0-vllm0.32.0", "one CuPy, for the row's CUDA release"))
    listed = [line.split()[0].lower() for line in out.splitlines() if line.lower().startswith("cupy")]
    assert listed == ["cupy-cuda13x"], out
    assert f"imports {CUPY}" in out, out
    # a CUDA 12.9 row keeps cupy-cuda12x, at the version the image's cupy-cuda13x had
    out = _run(e2e, _step("cuda12.9-vllm0.32.0", "one CuPy, for the row's CUDA release"))
    assert [line.split()[:2] for line in out.splitlines() if line.lower().startswith("cupy")] == [["cupy-cuda12x", CUPY]], out
    assert f"imports {CUPY}" in out, out
