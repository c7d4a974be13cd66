"""`runner resolve` against the real package index: the whole seed matrix (tests/fixtures/matrix-seed.yaml),
every set this machine can reach resolved for real with no conflict; the sets behind unreachable indexes
resolved through the mirror map against a local stub index; the newest rows, which layer official images;
and how a step's ask is made (layering, stand-ins). bench/resolve_all.py resolves the whole matrix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from runner.compose.mirrors import Mirrors
from runner.compose.plan import make_plan
from runner.compose.requirements import Requirements, pkg
from runner.compose.stages import StageBuilder, base_stage
from runner.verify.resolve import Layers, Step, ask_for, steps_of, whole_image_ask
from tests import resolve_fixture
from tests.conftest import ROOT, SEED_MATRIX

_UNREACHABLE = re.compile(r"(\S+) \((\w+)\)")


def resolve(*args: str, env: dict | None = None, cache) -> tuple[int, dict, float]:
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "runner", "resolve", "--format", "json", *args], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "RUNNER_CACHE_DIR": str(cache), **(env or {})},
                         timeout=1800)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.returncode, json.loads(out.stdout), time.monotonic() - start


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("resolve-cache")


@pytest.fixture(scope="module")
def seed_matrix(tmp_path_factory) -> str:
    """The seed matrix as a project's matrix.yaml, next to the project's own pack/."""
    folder = tmp_path_factory.mktemp("seed")
    (folder / "matrix.yaml").write_text(SEED_MATRIX.read_text())
    (folder / "pack").symlink_to(ROOT / "pack")
    return str(folder / "matrix.yaml")


@pytest.fixture(scope="module")
def seed_project(seed_matrix):
    from runner.compose.project import _validate

    return _validate(SEED_MATRIX, ROOT / "pack")


@pytest.fixture(scope="module")
def seed(cache, seed_matrix):
    """The whole seed matrix, resolved once against the real indexes."""
    code, data, seconds = resolve("--matrix", seed_matrix, cache=cache)
    print(f"[resolve] the seed matrix: {len(data['steps'])} install steps in {seconds:.0f} s", file=sys.stderr)
    return code, data


@pytest.mark.slow  # the whole seed matrix against the real index: minutes
def test_the_seed_matrix_resolves_with_no_conflict(seed, seed_project):
    project = seed_project
    code, data = seed
    conflicts = [f"{s['tag']} {s['platform']} step {s['step']} ({s['title']}): {s['message'][-400:]}"
                 for s in data["steps"] if s["status"] == "conflict" and s["step"]]
    assert not conflicts, "\n".join(conflicts[:10])
    # each image's steps as one set: every image holds together (the recipes decide which pin wins where a
    # step supersedes an earlier one, and pip-check allows exactly those)
    images = {(s["tag"], s["platform"]): s for s in data["steps"] if s["step"] == 0}
    # every whole-image set is an active target-platform's (deprecated ones are left out by default), and
    # most have one (an image whose installs all sit behind unreachable indexes has none)
    active = {(t.tag, p) for t in project.targets if not t.deprecated for p in t.platforms}
    assert set(images) <= active and len(images) * 2 > len(active), sorted(set(images) - active)[:5]
    broken = {key for key, s in images.items() if s["status"] == "conflict"}
    assert not broken, "\n".join(f"{' '.join(k)}: {images[k]['message'][-600:]} ({images[k]['notes'][-1]})"
                                  for k in sorted(broken))
    assert code == 0
    resolved = [s for s in data["steps"] if s["status"] == "resolved"]
    assert len(resolved) > 400
    # the versions that matter come out of the resolve: vLLM 0.14.1's own FlashInfer pin, say
    cuda = next(s for s in resolved if s["tag"] == "cuda12.8-vllm0.14.1" and s["versions"].get("vllm"))
    assert cuda["versions"]["vllm"] == "0.14.1" and cuda["versions"]["flashinfer-python"] == "0.5.3"
    unchecked = sorted({m for s in data["steps"] if s["status"] == "not-checked"
                        for m in _UNREACHABLE.findall(s["message"])})
    # every unchecked set is unchecked for a named source that cannot be reached, nothing else
    assert all(s["message"].startswith("cannot be reached from here: ") for s in data["steps"] if s["status"] == "not-checked")
    for url, why in unchecked:
        print(f"not checked here: {url} ({why})", file=sys.stderr)


@pytest.mark.slow  # the whole seed matrix against the real index: minutes
def test_an_unchanged_matrix_resolves_from_the_cache(seed, cache, seed_matrix):
    code, data, seconds = resolve("--matrix", seed_matrix, "--backend", "rocm", cache=cache)
    checked = [s for s in data["steps"] if s["status"] in ("resolved", "conflict")]
    conflicts = [s for s in data["steps"] if s["status"] == "conflict"]
    assert code == (2 if conflicts else 0) and checked and all(s["cached"] for s in checked)
    print(f"[resolve] rocm again, from the cache: {seconds:.1f} s", file=sys.stderr)


@pytest.mark.slow  # the whole seed matrix against the real index: minutes
def test_unreachable_sets_resolve_through_the_mirror_map(seed, seed_project, seed_matrix, tmp_path):
    project = seed_project
    _, data = seed
    unreachable = {url for s in data["steps"] if s["status"] == "not-checked" for url, _ in _UNREACHABLE.findall(s["message"])}
    assert unreachable, "every index was reachable: nothing to mirror"
    plan = make_plan(project.targets, project.recipes)
    find_links = {u for leaf in plan.leaves for st in steps_of(leaf.stage) for u in st.requirements.find_links}
    served = resolve_fixture.Served(tmp_path, resolve_fixture.build(tmp_path, plan.leaves, unreachable, find_links))
    try:
        code, mirrored, seconds = resolve("--matrix", seed_matrix, "--per-step", env={"RUNNER_MIRRORS": served.mirrors},
                                          cache=tmp_path / "cache")
    finally:
        served.close()
    print(f"[resolve] the seed matrix through the mirror map: {seconds:.0f} s", file=sys.stderr)
    bad = [f"{s['tag']} {s['platform']} step {s['step']} {s['status']}: {s['message'][-300:]}"
           for s in mirrored["steps"] if s["status"] in ("conflict", "not-checked")]
    # (each image as one set is judged on the real indexes above: here, every step)
    assert not bad and code == 0 and all(s["step"] for s in mirrored["steps"]), "\n".join(bad[:10])
    torch_steps = [s for s in mirrored["steps"] if s["tag"] == "cuda12.8-vllm0.14.1" and s["title"].startswith("torch ")]
    assert torch_steps and all(s["versions"]["torch"] == "2.9.1+cu128" for s in torch_steps)


@pytest.mark.slow  # against the real index
def test_the_newest_rows_that_layer_official_images_resolve(tmp_path):
    """What the layered rows add on their official image (Ray at the backend's pin, the audio extras)
    resolves against the real index, each step and each image as one set."""
    rows = "cuda13.0-vllm0.32.0 cuda13.0-sglang0.5.22 rocm7.2-vllm0.32.0 cann9.2-a3-vllm0.30.0 cann9.1-950-sglang0.5.22"
    code, data, seconds = resolve("--select", rows, cache=tmp_path / "cache")
    print(f"[resolve] the newest layered rows: {len(data['steps'])} install steps in {seconds:.0f} s", file=sys.stderr)
    bad = [f"{s['tag']} {s['platform']} step {s['step']} {s['status']}: {s['message'][-300:]}"
           for s in data["steps"] if s["status"] in ("conflict", "not-checked")]
    assert code == 0 and not bad, "\n".join(bad)
    assert {s["tag"] for s in data["steps"]} == set(rows.split())
    ray = {s["tag"]: s["versions"].get("ray") for s in data["steps"] if s["step"] and s["versions"].get("ray")}
    assert ray["cuda13.0-vllm0.32.0"] == "2.54.0" and ray["cann9.2-a3-vllm0.30.0"] == "2.48.0"


def _step(reqs: Requirements, args: dict | None = None):
    b = StageBuilder("service", "svc", base_stage("example.com/x:1", "linux/amd64"))
    for k, v in (args or {}).items():
        b.arg(k, v)
    return steps_of(b.install(reqs).build())[0]


def test_a_step_is_layered_on_what_earlier_steps_installed():
    step = _step(Requirements((pkg("vllm", built="/mnt/vllm/*.whl", resolve_as="vllm==${V}", without=("torch",)),
                               pkg("sgl-kernel", built="/mnt/k/*.whl"), pkg("numpy"))), {"V": "0.14.1"})
    layers = Layers(installed={"torch": "2.9.1+cu128", "numpy": "2.5.5", "ray": "2.60.0"},
                    pinned={"torch": "2.9.1+cu128", "ray": "2.60.0"}, sources=("https://mirror.example/cu128",))
    ask, notes = ask_for(step, layers, "3.12", "x86_64-manylinux_2_35",
                         Mirrors.of({"https://mirror.example/": "http://127.0.0.1:1/"}))
    assert ask.requirements == ("vllm==0.14.1", "numpy")
    # exact pins of earlier steps hold (public versions); what vLLM's source build leaves out is
    # overridden with the installed torch; a built package without a stand-in is taken as given
    assert ask.constraints == ("ray==2.60.0",)
    assert ask.overrides == ("torch==2.9.1", "sgl-kernel ; python_version < '0'")
    assert "numpy==2.5.5" in ask.preferences
    assert ask.extra_index_urls == ("http://127.0.0.1:1/cu128",)
    assert any("vllm==0.14.1 stands for it" in n for n in notes) and any("taken as given" in n for n in notes)


def test_python_platform_follows_the_base_image():
    from runner.verify.resolve import python_platform

    assert python_platform("linux/arm64", "nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04") == "aarch64-manylinux_2_35"
    assert python_platform("linux/amd64", "example.com/x:ubuntu24.04") == "x86_64-manylinux_2_39"


def test_a_superseded_requirement_is_held_at_what_the_superseding_step_resolved_to():
    """An SGLang step on a vLLM image supersedes vLLM's llguidance pin without naming llguidance: the image
    as one set holds llguidance at what the SGLang step resolved to alone (uv's override), so that set
    meets the image the build leaves, not the two pins at once."""
    vllm = Step(1, "vllm", "vLLM", Requirements((pkg("vllm==0.14.1"),)), {})
    sglang = Step(2, "sglang", "SGLang", Requirements((pkg("sglang==0.5.8"),), upgrade=("llguidance",),
                                                      supersedes=(("vllm", "llguidance"),)), {})
    mirrors = Mirrors.of({})
    alone = whole_image_ask([vllm, sglang], "3.12", "x86_64-manylinux_2_35", mirrors, set())
    assert not [o for o in alone.ask.overrides if o.startswith("llguidance")]  # nothing chosen: nothing held
    held = whole_image_ask([vllm, sglang], "3.12", "x86_64-manylinux_2_35", mirrors, set(),
                           chosen={2: {"sglang": "0.5.8", "llguidance": "0.7.30"}, 1: {"llguidance": "1.3.0"}})
    assert "llguidance==0.7.30" in held.ask.overrides and held.ask.requirements == ("vllm==0.14.1", "sglang==0.5.8")
