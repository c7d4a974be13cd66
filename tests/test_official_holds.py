"""A row that layers an official image keeps the image's OpenTelemetry and what its service requires.

Steps as rendered (Ray's for rocm7.0-vllm0.18.1, vllm-omni's for cann8.5-310p-vllm0.15.0) run under bash
with uv (its installs as dry runs: the wheels are large) against the real index, on an environment of
the image's metadata: OpenTelemetry 1.40.0 and its OTLP exporter; vLLM 0.15.0 with transformers 4.57;
OpenTelemetry 1.45.2 with an exporter that exists only from 1.44 on, under LMCache's step of rocm7.2-vllm0.32.0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.compose.official import IMAGE_HOLDS
from runner.compose.project import load_project
from runner.compose.requirements import installs
from runner.compose.stages import Run
from runner.verify.resolve import Layers, ask_for, steps_of
from tests.conftest import ROOT

TAG = "rocm7.0-vllm0.18.1"
# what the official image has (its vLLM's tracing): the SDK and the OTLP exporter of one release
IMAGE = {"opentelemetry-api": ("1.40.0", ()),
         "opentelemetry-semantic-conventions": ("0.61b0", ("opentelemetry-api==1.40.0",)),
         "opentelemetry-sdk": ("1.40.0", ("opentelemetry-api==1.40.0", "opentelemetry-semantic-conventions==0.61b0")),
         "opentelemetry-exporter-otlp-proto-http": ("1.40.0", ("opentelemetry-sdk~=1.40.0",))}


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT / "matrix.yaml")


def _ray_step(project) -> Run:
    leaf = project.leaf_stage(TAG, "linux/amd64")
    return next(s for stage in [leaf, *leaf.chain()] for s in stage.steps
                if isinstance(s, Run) and s.requirements and s.requirements.title.startswith("Ray "))


# what vllm-ascend's 310P image has of vLLM 0.15.0 and the Hugging Face stack it requires
VLLM_IMAGE = {"vllm": ("0.15.0", ("transformers<5,>=4.56.0", "mistral_common[image]>=1.8.8",
                                  'lmcache>=0.3 ; extra == "lmcache"', "vllm-flash-attn @ https://example.invalid/x.whl")),
              "transformers": ("4.57.6", ("huggingface-hub<1.0,>=0.34.0", "tokenizers<=0.23.0,>=0.22.0")),
              "huggingface-hub": ("0.36.0", ()), "tokenizers": ("0.22.1", ())}


def _venv(folder: Path, uv: str, image: dict) -> Path:
    subprocess.run([uv, "venv", "-q", "-p", "3.11", str(folder)], check=True, timeout=120)
    # the image's build tools, for the sdists a --no-build-isolation step builds (sox): really installed
    subprocess.run([uv, "pip", "install", "-q", "--python", str(folder / "bin" / "python"), "setuptools<80", "wheel"],
                   check=True, timeout=300)
    site = next(folder.glob("lib/python3*/site-packages"))
    for name, (version, requires) in image.items():  # metadata only: a dry run reads nothing else
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                       + "".join(f"Requires-Dist: {r}\n" for r in requires))
        (info / "INSTALLER").write_text("uv\n")
        (info / "RECORD").write_text("")
    return folder


def _run(script: str, tmp_path: Path, name: str, image: dict = IMAGE) -> str:
    """The step's lines under the Dockerfile's shell, on a venv of the image's metadata; uv's plan."""
    real = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    shim = tmp_path / f"bin-{name}"
    shim.mkdir()
    # substitution: uv's installs become dry runs (what the step would install, not Ray's 70 MB)
    (shim / "uv").write_text(f'#!/bin/bash\nif [ "$1 $2" = "pip install" ]; then shift 2; '
                             f'exec {real} pip install --dry-run "$@"; fi\nexec {real} "$@"\n')
    (shim / "uv").chmod(0o755)
    venv = _venv(tmp_path / f"venv-{name}", real, image)
    # the first line wires the build's cache mount (/root/.cache/uv), which a test has no use for
    body = "\n".join(script.splitlines()[1:])
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", body], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PATH=f"{shim}:{venv}/bin:{os.environ['PATH']}", VIRTUAL_ENV=str(venv)))
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_rays_step_keeps_the_images_opentelemetry(project, tmp_path):
    step = _ray_step(project)
    assert step.requirements.holds_installed == IMAGE_HOLDS
    plan = _run(step.script, tmp_path, "held")
    assert "- opentelemetry-sdk==1.40.0" not in plan and "- opentelemetry-api==1.40.0" not in plan, plan[-2000:]
    # Ray's dashboard takes the beta Prometheus exporter of the image's release
    assert re.search(r"\+ opentelemetry-exporter-prometheus==0\.61b0", plan), plan[-2000:]
    # the same step without the hold: the exporter's newest release moves the SDK under the OTLP exporter
    unheld = step.script.replace(next(x for x in step.script.splitlines() if x.startswith("uv pip freeze")), ":")
    moved = _run(unheld, tmp_path, "unheld")
    assert re.search(r"\+ opentelemetry-sdk==1\.(4[1-9]|[5-9]\d)\.", moved), moved[-2000:]


def test_every_install_on_the_official_image_holds_it(project):
    leaf = project.leaf_stage(TAG, "linux/amd64")
    # the image's own vLLM is declared for the resolver only (nothing installs it)
    layered = [r for stage, r in installs(leaf).steps if stage.name == "vllm" and not r.title.startswith("the official")]
    assert len(layered) >= 3 and all(r.holds_installed == IMAGE_HOLDS for r in layered), [r.title for r in layered]
    # the compiled stages below it hold nothing: their OpenTelemetry is theirs to choose
    assert not [r.title for stage, r in installs(leaf).steps if stage.name != "vllm" and r.holds_installed]


def test_the_resolver_reads_the_hold_as_constraints(project):
    step = next(s for s in steps_of(project.leaf_stage(TAG, "linux/amd64")) if s.requirements.title.startswith("Ray "))
    layers = Layers(installed={"opentelemetry-sdk": "1.40.0", "opentelemetry-api": "1.40.0", "numpy": "2.2.6"})
    ask, _ = ask_for(step, layers, "3.12", "x86_64-manylinux_2_35", project.mirror_map())
    assert {"opentelemetry-api==1.40.0", "opentelemetry-sdk==1.40.0"} <= set(ask.constraints)
    assert not [c for c in ask.constraints if c.startswith("numpy")]  # the rest stays a preference



def test_the_omni_step_keeps_what_the_images_vllm_requires(project, tmp_path):
    leaf = project.leaf_stage("cann8.5-310p-vllm0.15.0", "linux/amd64")
    step = next(s for stage in [leaf, *leaf.chain()] for s in stage.steps
                if isinstance(s, Run) and s.requirements and "/mnt/vllm-omni/" in s.script)
    assert step.requirements.holds_requirements_of == ("vllm",)
    # the build stage's wheel, as a resolve and a rehearsal read it: the index's release it stands for
    script = step.script.replace("/mnt/vllm-omni/*.whl", "vllm-omni==0.14.0")
    plan = _run(script, tmp_path, "held", VLLM_IMAGE)
    assert "transformers" not in plan and "huggingface-hub" not in plan, plan[-2000:]
    # installed alone, vllm-omni's newest diffusers takes huggingface-hub 1.x, and transformers 5.x with it
    unheld = script[:script.index("python3 - >>")] + script[script.index("RUNNER_HOLD\nuv pip") + len("RUNNER_HOLD\n"):]
    moved = _run(unheld, tmp_path, "unheld", VLLM_IMAGE)
    assert re.search(r"\+ transformers==[5-9]\.", moved), moved[-2000:]


def test_the_held_requirements_leave_out_extras_and_direct_urls(tmp_path):
    """What the rendered hold writes for vLLM's metadata: its plain requirements, extras dropped from names."""
    from runner.compose.requirements import Requirements, pkg

    real = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    venv = _venv(tmp_path / "venv", real, VLLM_IMAGE)
    command = Requirements((pkg("sox"),), holds_requirements_of=("vllm", "absent")).command(
        constraints_file=str(tmp_path / "c.txt"))
    hold = command[command.index("python3 - >>"):command.index("RUNNER_HOLD\nuv pip") + len("RUNNER_HOLD")]
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", hold], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH=f"{venv}/bin:{os.environ['PATH']}"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.txt").read_text().splitlines() == ["transformers<5,>=4.56.0", "mistral_common>=1.8.8"]


# what vLLM 0.32's image has of OpenTelemetry: 1.45.2, with an exporter first published for 1.44
IMAGE_145 = {"opentelemetry-api": ("1.45.2", ()),
             "opentelemetry-sdk": ("1.45.2", ("opentelemetry-api==1.45.2",)),
             "opentelemetry-exporter-otlp-common": ("0.66b2", ("opentelemetry-sdk>=1.44",)),
             "opentelemetry-exporter-prometheus": ("0.66b2", ("opentelemetry-sdk~=1.45.2", "opentelemetry-api~=1.45"))}


def test_lmcache_takes_the_images_opentelemetry_over_its_own_caps(project, tmp_path):
    """LMCache caps opentelemetry-api at 1.40.0; on an image of 1.45 its step overrides exactly the
    declared requirements with the image's versions, and pip check allows exactly those."""
    from runner.compose.official import BUILT_OVER_IMAGE
    from runner.compose.requirements import superseded

    leaf = project.leaf_stage("rocm7.2-vllm0.32.0", "linux/amd64")
    step = next(s for stage in [leaf, *leaf.chain()] for s in stage.steps
                if isinstance(s, Run) and s.requirements and "/mnt/lmcache/" in s.script)
    assert set(step.requirements.held_over()) == set(BUILT_OVER_IMAGE["lmcache"])
    assert superseded(leaf)["lmcache"] == set(BUILT_OVER_IMAGE["lmcache"])
    # the build stages' wheels, as a resolve and a rehearsal read them: the index's releases they stand for
    script = step.script.replace("/mnt/lmcache/*.whl", "lmcache==0.5.0").replace(
        "/mnt/mooncake/*.whl", "mooncake-transfer-engine==0.3.11.post1")
    plan = _run(script, tmp_path, "over", IMAGE_145)
    assert not re.search(r"[-+] opentelemetry-(api|sdk|exporter-prometheus)==", plan), plan[-2000:]
    assert "+ lmcache==0.5.0" in plan, plan[-2000:]
    # without the override, no OpenTelemetry satisfies LMCache and the image's exporter at once
    bare = "\n".join(x.replace(" --override /tmp/runner-overrides.txt", "") for x in script.splitlines()
                     if not (x.startswith("uv pip freeze") and "runner-overrides" in x))
    assert "--override" not in bare
    with pytest.raises(AssertionError, match="unsatisfiable"):
        _run(bare, tmp_path, "bare", IMAGE_145)


def test_the_resolver_reads_the_override_as_the_rendered_line_does(project):
    step = next(s for s in steps_of(project.leaf_stage("rocm7.2-vllm0.32.0", "linux/amd64"))
                if "lmcache" in s.requirements.title)
    layers = Layers(installed={"opentelemetry-api": "1.45.2", "opentelemetry-exporter-prometheus": "0.66b2",
                               "opentelemetry-sdk": "1.45.2"})
    ask, _ = ask_for(step, layers, "3.12", "x86_64-manylinux_2_35", project.mirror_map())
    assert {"opentelemetry-api==1.45.2", "opentelemetry-exporter-prometheus==0.66b2"} <= set(ask.overrides)
    assert "opentelemetry-sdk==1.45.2" in ask.constraints and "opentelemetry-sdk==1.45.2" not in ask.overrides
