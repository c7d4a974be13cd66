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
    out = subprocess.run([sys.executable, "-m", "runner", "components", "--backend", backend, "--include-deprecated",
                          "--format", "markdown"], cwd=ROOT, capture_output=True, text=True, check=True)
    committed = (ROOT / "pack" / backend / "components.md").read_text()
    assert out.stdout == committed, (f"pack/{backend}/components.md is stale: run `runner components --backend "
                                     f"{backend} --include-deprecated --format markdown > pack/{backend}/components.md`")


def test_every_image_checks_its_components(project):
    from runner.compose.plan import make_plan
    from runner.verify.smoke import checks_for

    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves[::7]:
        checks = {c.name: c for c in checks_for(project.pack_path, leaf.target, leaf.stage)}
        declared = [c.name for stage in leaf.stage.chain() for c in stage.components]
        assert declared and all(f'"{name}"' in checks["components"].script for name in declared), leaf.target.tag


def _named_versions(spec: str) -> list[str]:
    """The versions a requirement's specifier names that it also allows (">=2.47.1,<=2.48.0": both)."""
    from packaging.specifiers import SpecifierSet

    allowed = SpecifierSet(spec)
    return [s.version for s in allowed if "*" not in s.version and allowed.contains(s.version, prereleases=True)]


def test_declared_versions_match_what_the_recipes_install(project):
    """A component's declared version admits every version its install steps pin or bound it to (the
    CANN recipes once declared ray 2.4 and installed 2.47.1 to 2.48.0)."""
    from packaging.specifiers import SpecifierSet

    from runner.compose.plan import make_plan
    from runner.compose.requirements import canonical, installs, pkg
    from runner.verify.probes import declared

    compared, wrong = 0, []
    for leaf in make_plan(project.targets, project.recipes).leaves:
        specs: dict[str, set[str]] = {}
        for _, reqs in installs(leaf.stage).steps:  # build order: a later install replaces an earlier one
            step: dict[str, set[str]] = {}
            for p in reqs.packages:
                for named in (p, pkg(p.resolve_as) if p.resolve_as else None):
                    if named is not None and named.spec and not named.built and "$" not in named.spec:
                        step.setdefault(canonical(named.name), set()).add(named.spec)
            specs.update(step)
        for c in declared(leaf.stage):
            for spec in specs.get(canonical(c.dist), set()) if c.specifier() else ():
                for version in _named_versions(spec):
                    compared += 1
                    if not SpecifierSet(c.specifier()).contains(version, prereleases=True):
                        wrong.append(f"{leaf.target.tag}: {c.name} declared {c.version}, installed {c.dist}{spec}")
    assert compared > 100 and not wrong, "\n".join(sorted(set(wrong))[:20])


@pytest.mark.parametrize("declared,found,passes", [
    ("2.4", "2.47.1", False), ("2.47", "2.47.1", True), ("2.1", "2.10.0", False), ("2.1.0", "2.1.0+cpu", True),
    (">=2.47.1,<=2.48.0", "2.48.0", True), (">=2.47.1,<=2.48.0", "2.4.1", False), ("0.3.8.post1", "0.3.8", False),
    ("0.3.8.post1", "0.3.8.post1", True), ("2.9.0", "2.9.0rc1", True),
])
def test_the_components_check_compares_versions_as_versions(declared, found, passes):
    from runner.compose.components import python
    from runner.verify.smoke import Check

    component = python("torch", declared)
    check = Check("components", "", versions=((component.dist, component.specifier()),))
    result = check.judge(0, f"component-version torch {found}\ntorch  {declared}  ok\n")
    assert result.passed is passes, result.reason
    if not passes:
        assert result.reason == f"torch is {found}, not {component.specifier()}"


def test_a_malformed_declared_version_is_refused():
    from runner.compose.components import python

    with pytest.raises(ValueError, match="component ray: malformed version '2.4x'"):
        python("ray", "2.4x")
