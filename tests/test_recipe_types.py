"""The recipes type-check: mypy, with the project's configuration, over every pack/<backend>/recipe.py,
the compose package they build with, and a module that assigns each recipe to a RecipeModule (the
protocol check loading cannot make: argument and return types). A wrong recipe is reported at its line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def mypy(pack: Path, work: Path) -> subprocess.CompletedProcess:
    """mypy over the recipes of `pack` (run from its parent, so each is module pack.<backend>.recipe),
    src/runner/compose and a generated module checking each recipe against the protocol."""
    backends = sorted(p.parent.name for p in pack.glob("*/recipe.py"))
    checks = work / "checks"
    checks.mkdir(parents=True, exist_ok=True)
    lines = ["from runner.compose.recipes import RecipeModule", ""]
    lines += [f"from pack.{b} import recipe as {b}" for b in backends]
    lines += [""] + [f"{b}_recipe: RecipeModule = {b}" for b in backends]
    (checks / "recipe_protocol.py").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "MYPYPATH": str(checks)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(work / "cache"),
         "--no-color-output",
         *(str(pack / b / "recipe.py") for b in backends), str(ROOT / "src" / "runner" / "compose"),
         str(checks / "recipe_protocol.py")],
        cwd=pack.parent, env=env, capture_output=True, text=True, timeout=300)


def test_the_recipes_and_the_kit_type_check(tmp_path: Path):
    done = mypy(ROOT / "pack", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = int(re.search(r"Success: no issues found in (\d+) source files", done.stdout)[1])
    recipes = len(list((ROOT / "pack").glob("*/recipe.py")))
    assert recipes >= 8 and checked >= recipes + len(list((ROOT / "src" / "runner" / "compose").glob("*.py"))) + 1


def test_a_wrong_recipe_is_reported_at_its_lines(tmp_path: Path):
    pack = tmp_path / "project" / "pack"
    shutil.copytree(ROOT / "pack" / "corex", pack / "corex")
    shutil.copytree(ROOT / "pack" / "cuda", pack / "cuda")
    recipe = pack / "corex" / "recipe.py"
    text = recipe.read_text()
    # a torch version given as a number, and a service() the plan cannot use: it returns no Stage
    text = text.replace('torch="2.4.1"', "torch=2.41")
    text = text.replace("def service(t: Target, runtime: Stage) -> Stage:", "def service(t: Target, runtime: Stage) -> str:")
    text = text.replace("    return finish(vendor_service(", "    return str(finish(vendor_service(") + ")\n"
    recipe.write_text(text)
    wrong_torch = next(i for i, line in enumerate(text.splitlines(), 1) if "torch=2.41" in line)
    done = mypy(pack, tmp_path / "work")
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert any(e.startswith(f"pack/corex/recipe.py:{wrong_torch}: error: ") and '"float"' in e and '"str"' in e for e in errors), errors
    assert any(re.match(r".*recipe_protocol\.py:\d+: error: Incompatible types in assignment .*\"RecipeModule\"", e)
               for e in errors), errors
    assert 'Following member(s) of Module "pack.corex.recipe" have conflicts' in done.stdout
    assert "def service(t: Target, runtime: Stage) -> str" in done.stdout
    assert len(errors) == 2, errors  # the untouched CUDA recipe and the kit stay clean
