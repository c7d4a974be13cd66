"""Every pack/<backend>/recipe.py is a RecipeModule: the functions the plan calls, with the arguments
it passes; a recipe that is not is refused at its file and line."""

from __future__ import annotations

import inspect
import shutil

import pytest

from runner.compose.recipes import RecipeModule, load_recipes
from runner.model.errors import UserError
from tests.conftest import ROOT


def test_every_recipe_satisfies_the_protocol():
    recipes = load_recipes(ROOT / "pack")
    assert len(recipes) == len(list((ROOT / "pack").glob("*/recipe.py"))) >= 8
    for backend, recipe in recipes.items():
        assert isinstance(recipe.module, RecipeModule), backend
        assert all(isinstance(s, str) for s in recipe.module.SERVICES) and recipe.module.SERVICES, backend
        for name in ("runtime", "service", "base"):
            if (fn := getattr(recipe.module, name, None)) is not None:
                inspect.signature(fn).bind(None, None)  # the two arguments the plan passes


def test_a_recipe_that_is_not_one_is_refused(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(ROOT / "pack" / "corex", pack / "corex")
    recipe = pack / "corex" / "recipe.py"
    recipe.write_text(recipe.read_text() + "\n\ndef service(t):  # one argument too few\n    return t\n")
    with pytest.raises(UserError, match=r"service\(\) does not take two arguments") as e:
        load_recipes(pack)
    assert e.value.where.file == str(recipe) and e.value.where.line == recipe.read_text().count("\n") - 1
