"""`runner rehearse --cover`: the fewest target-platforms that run every distinct recipe script of the
selection, on the seed matrix (tests/fixtures/matrix-seed.yaml) with the project's own recipes."""

from __future__ import annotations

import pytest

from runner.compose.plan import make_plan
from runner.compose.project import _validate
from runner.rehearse.cover import covering, scripts
from tests.conftest import ROOT, SEED_MATRIX


@pytest.fixture(scope="module")
def seed():
    project = _validate(SEED_MATRIX, ROOT / "pack")
    return project, make_plan(project.targets, project.recipes)


def test_the_cover_runs_every_distinct_script_of_the_plan_in_far_fewer_images(seed):
    project, plan = seed
    found = covering(plan.leaves)
    everything = set().union(*(scripts(leaf) for leaf in plan.leaves))
    chosen = [leaf for leaf, _ in found.chosen]
    assert set().union(*(scripts(leaf) for leaf in chosen)) == everything
    assert found.scripts == len(everything) and found.leaves == len(plan.leaves) == 144
    assert len(chosen) < len(plan.leaves) / 2, found.describe()
    # each choice adds what it says it adds, and something
    seen: set[str] = set()
    for leaf, added in found.chosen:
        assert added == len(scripts(leaf) - seen) > 0, (leaf.target.tag, leaf.platform)
        seen |= scripts(leaf)
    assert covering(plan.leaves) == found  # the same selection rehearses the same images


def test_other_platforms_are_chosen_only_for_scripts_no_amd64_image_runs(seed):
    _, plan = seed
    found = covering(plan.leaves)
    on_amd64 = set().union(*(scripts(leaf) for leaf in plan.leaves if leaf.platform == "linux/amd64"))
    others = [leaf for leaf, _ in found.chosen if leaf.platform != "linux/amd64"]
    assert others, "the seed matrix has arm64-only scripts (CANN's arm64 wheels, for one)"
    for leaf in others:
        assert scripts(leaf) - on_amd64, (leaf.target.tag, leaf.platform)
    # amd64 choices come first: the report reads in the order they are built
    platforms = [leaf.platform for leaf, _ in found.chosen]
    assert platforms == sorted(platforms, key=lambda p: p != "linux/amd64")


def test_the_chosen_targets_plan_back_to_exactly_the_chosen_target_platforms(seed):
    project, plan = seed
    found = covering([leaf for leaf in plan.leaves if leaf.target.backend in ("cuda", "rocm")])
    again = make_plan(found.targets(), project.recipes)
    assert sorted((leaf.target.tag, leaf.platform) for leaf in again.leaves) == \
        sorted((leaf.target.tag, leaf.platform) for leaf, _ in found.chosen)
    assert "target-platforms run all" in found.describe() and found.chosen[0][0].target.tag in found.describe()
