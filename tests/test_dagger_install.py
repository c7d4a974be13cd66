"""The module installs and loads the way the Dagger engine's Python runtime installs and loads it:
the real uv commands of sdk/python/runtime on the real module context, with the engine's SDK vendored
as version 0.0.0 (see tests/dagger_runtime.py). Needs the package index."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests import dagger_runtime as rt
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """The module context as the engine loads it, with the SDK vendored."""
    source = rt.module_context(ROOT, tmp_path_factory.mktemp("ctx"))
    rt.vendor_sdk(source, rt.engine_version())
    return source


def test_the_context_holds_the_module_and_what_it_installs_nothing_else(context: Path):
    root = context.parent
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "/sdk/" not in f"/{p.relative_to(root)}"}
    assert {"dagger.json", ".dagger/pyproject.toml", ".dagger/uv.lock", "pyproject.toml",
            "src/runner/dagger/module.py", "pack/cuda/recipe.py"} <= files
    assert not [f for f in files if f.startswith(("tests/", ".github/", "ci/", "README", "bench/"))]
    assert not [f for f in files if f.startswith("pack/") and not f.endswith("/recipe.py")]


@pytest.mark.slow  # the engine runtime's install from the index: a minute
def test_the_engine_runtime_installs_and_registers_the_module(context: Path, tmp_path: Path):
    steps = rt.install(context, tmp_path / "venv")
    assert [s.args[1:] for s in steps] == [["lock"], ["sync", "--no-dev"]]  # the uv.lock path of the runtime
    assert all(s.returncode == 0 for s in steps), steps[-1].stderr[-2000:]
    assert "runner==0.1.0" in steps[1].stderr and "dagger-io==0.0.0" in steps[1].stderr
    # the lock was already current: the engine's `uv lock` changes nothing
    assert (context / "uv.lock").read_text() == (ROOT / ".dagger" / "uv.lock").read_text()
    done = rt.register(context, tmp_path / "venv")
    assert done.returncode == 0, done.stderr[-3000:]
    defs = json.loads(done.stdout)
    assert {"Runner", "Selected", "Released", "Build", "BuiltImage"} <= set(defs["objects"])
    runner = defs["objects"]["Runner"]["functions"]
    assert {"select", "prune", "job", "dockerfile"} <= set(runner)
    assert {"build", "images", "matrix", "plan"} <= set(defs["objects"]["Selected"]["functions"])
    assert {"publish", "merge", "promote", "discard"} <= set(defs["objects"]["Released"]["functions"])
    assert defs["description"].startswith("Build, smoke-test and publish GPUStack Runner")
    assert set(defs["enums"]["Backend"]["members"]) == {p.parent.name.upper() for p in (ROOT / "pack").glob("*/recipe.py")}


def test_the_install_fails_when_the_sdk_pin_comes_back(context: Path, tmp_path: Path):
    """The pin that broke the module: runner itself requiring the SDK release of dagger.json."""
    pinned = tmp_path / "ctx"
    shutil.copytree(context.parent, pinned)
    pyproject = pinned / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"anyio>=4",', f'"dagger-io=={rt.engine_version()}",\n    "anyio>=4",', 1))
    steps = rt.install(pinned / ".dagger", tmp_path / "venv")
    assert steps[-1].returncode != 0
    assert re.search(r"dagger-io.*(unsatisfiable|no version)", steps[-1].stderr, re.S), steps[-1].stderr[-1500:]


def test_the_old_layout_never_loaded(tmp_path: Path):
    """The layout before: module source at the root, no lock, dagger-io pinned. The runtime's
    no-lock path (`uv pip install -e ./sdk -e .`) cannot satisfy the pin with the SDK it vendors."""
    old = tmp_path / "old"
    old.mkdir()
    text = (ROOT / "pyproject.toml").read_text()
    text = text.replace('"anyio>=4",', f'"dagger-io=={rt.engine_version()}",\n    "anyio>=4",', 1)
    (old / "pyproject.toml").write_text(text)
    shutil.copytree(ROOT / "src", old / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    rt.vendor_sdk(old, rt.engine_version())
    steps = rt.install(old, tmp_path / "venv")
    assert [s.args[1:4] for s in steps] == [["pip", "install", "-e"]]
    assert steps[0].returncode != 0 and "dagger-io" in steps[0].stderr, steps[0].stderr[-1500:]
