"""CANN's compiled vLLM rows install vllm-omni and the extras in a step after vLLM's own (device-empty
vLLM is a local build, not asked for again): that step, as rendered, run by uv (dry run, the real index)
on an environment holding what vLLM's step chose, keeps those choices consistent."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from runner.compose.project import load_project
from runner.compose.stages import Run
from tests.conftest import ROOT

TAG = "cann8.5-a3-vllm0.14.1"


def _installed(venv: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A distribution's metadata as an install leaves it (no code: a dry run reads only this)."""
    info = next(venv.glob("lib/python3*/site-packages")) / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    (info / "INSTALLER").write_text("uv\n")
    (info / "RECORD").write_text("")


def _extras_step() -> tuple[list[str], str]:
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage(TAG, "linux/amd64")
    script = next(s.script for s in leaf.steps if isinstance(s, Run) and "/mnt/vllm-omni/" in s.script)
    line = next(x for x in script.splitlines() if x.startswith("uv pip install"))
    pins = re.search(r"<<'RUNNER_PINS'\n(.*?)\nRUNNER_PINS", script, re.S).group(1)
    words = [w.strip('"') for w in line.split()[3:] if not w.startswith("--") and not w.endswith("constraints.txt")]
    # the build stages' wheels, as the recipe's resolve reads them: the index's releases they stand for
    words = [{"/mnt/vllm-omni/*.whl": "vllm-omni==0.14.0", "/mnt/mooncake/*.whl": "mooncake-transfer-engine==0.3.7.post2"}
             .get(w, w) for w in words]
    return words, pins


def test_the_omni_step_keeps_what_vllms_step_chose(tmp_path):
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    words, pins = _extras_step()
    assert "torch==2.9.0" in pins.splitlines()  # the image's torch, held (pack/cann/recipe.py)
    assert "prometheus-fastapi-instrumentator>=7.0.0" in words
    (tmp_path / "constraints.txt").write_text(pins + "\n")

    def dry_run(asked: list[str]) -> str:
        venv = tmp_path / f"venv{len(asked)}"
        subprocess.run([uv, "venv", "-q", "-p", "3.11", str(venv)], check=True, timeout=120)
        # what vLLM 0.14.1's own step leaves: the newest instrumentator, which needs starlette 1.x; the torch stage's torch
        _installed(venv, "prometheus-fastapi-instrumentator", "8.1.0", ("starlette<2.0.0,>=1.0.0",))
        _installed(venv, "starlette", "1.0.0")
        _installed(venv, "torch", "2.9.0")
        done = subprocess.run([uv, "pip", "install", "--dry-run", "--python", str(venv), "--constraint",
                               str(tmp_path / "constraints.txt"), *asked], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-1500:]
        return done.stderr

    plan = dry_run(words)
    assert "- torch==" not in plan  # the image's torch stays
    if re.search(r"\+ starlette==0\.", plan):  # vllm-omni's gradio takes starlette below 1: so must the instrumentator
        assert re.search(r"\+ prometheus-fastapi-instrumentator==7\.", plan), plan[-2000:]
    # without asking for it again, uv leaves vLLM's 8.x instrumentator under a starlette it does not allow
    unasked = dry_run([w for w in words if not w.startswith("prometheus-fastapi-instrumentator")])
    assert re.search(r"\+ starlette==0\.", unasked) and "prometheus-fastapi-instrumentator" not in unasked
