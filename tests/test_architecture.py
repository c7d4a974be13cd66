"""The package tree follows the walk: imports flow down the layers, the two faces share runner.ui
instead of importing each other, nothing imports in a circle (see tests/architecture.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.architecture import LAYERS, modules, recipe_violations, violations
from tests.conftest import ROOT

SRC = ROOT / "src"


def test_the_source_follows_the_rules():
    assert violations(SRC) == []
    assert recipe_violations(ROOT / "pack") == []


def test_every_package_is_a_layer_and_says_what_it_may_import():
    packages = {p.name for p in (SRC / "runner").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    for name in packages:
        text = (SRC / "runner" / name / "__init__.py").read_text()
        assert text.startswith('"""'), name  # what the package owns
        rule = text.split('"""')[1] + "".join(line for line in text.splitlines() if line.startswith("#"))
        assert "import" in rule.lower(), name  # and what it may import, in its docstring or a comment


def test_names_say_what_they_hold():
    names = {Path(p).stem for p in map(str, modules(SRC).values())}
    assert not [n for n in names if n.endswith(("_more", "_object")) or n in ("show", "misc", "utils", "helpers")]


@pytest.fixture
def src_copy(tmp_path: Path) -> Path:
    shutil.copytree(SRC / "runner", tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + "\n" + line + "\n")


@pytest.mark.parametrize("file, line, expected", [
    ("model/targets.py", "from runner.compose.plan import make_plan", "a higher layer"),
    ("compose/plan.py", "from runner.engines.docker import Docker", "a higher layer"),
    ("release/pipeline.py", "import runner.ui.tables", "a higher layer"),
    ("dagger/module.py", "from runner.cli.parser import build_parser", "imports the other face"),
    ("cli/inspect.py", "from runner.dagger.args import Tag", "imports the other face"),
    ("release/publish.py", "import dagger", "Dagger SDK"),
    ("model/errors.py", "from runner.model.matrix import Matrix", "import circle"),
    ("cli/release.py", "from runner.engines.docker import Docker", "faces call runner.flow"),
    ("cli/jobs.py", "from runner.compose.plan import make_plan", "faces call runner.flow"),
    ("dagger/module.py", "from runner.engines.dagger import StageContainers", "faces call runner.flow"),
    ("dagger/build.py", "from runner.release.registry import Registry", "faces call runner.flow"),
    ("dagger/ci.py", "from runner.release import pipeline", "faces call runner.flow"),
    ("cli/rehearse.py", "from runner.rehearse.run import rehearse", "faces call runner.flow"),
])
def test_a_forbidden_import_is_caught(src_copy: Path, file: str, line: str, expected: str):
    _append(src_copy / "runner" / file, line)
    found = violations(src_copy)
    assert any(expected in v for v in found), found


def test_a_recipe_reaching_into_the_release_flow_is_caught(tmp_path: Path):
    shutil.copytree(ROOT / "pack", tmp_path / "pack", ignore=shutil.ignore_patterns("__pycache__"))
    _append(tmp_path / "pack" / "cuda" / "recipe.py", "from runner.release.pipeline import build_all")
    assert any("runner.release.pipeline" in v for v in recipe_violations(tmp_path / "pack"))
