"""The stage plan: the DAG of distinct stages needed to build a selection of targets and platforms.

Identical stages (same parent, same steps, same platform) have the same content key and appear once;
`naive_stages` counts what building every target alone would cost, to show what sharing saves.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

from runner.model.errors import UserError
from runner.compose.recipes import Recipe
from runner.compose.stages import Stage, dependencies_first
from runner.model.targets import Target


@dataclass(frozen=True)
class Leaf:
    """One target on one platform, and its final (service) stage."""

    target: Target
    platform: str
    stage: Stage


@dataclass
class Plan:
    """Distinct stages in build order (every stage after the ones it depends on) and the leaves."""

    stages: list[Stage] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)
    naive_stages: int = 0
    chain_lengths: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def distinct_stages(self) -> int:
        return len(self.stages)

    def to_json(self) -> dict:
        return {
            "stages": [stage_json(s) for s in self.stages],
            "distinct_stages": self.distinct_stages,
            "naive_stages": self.naive_stages,
            "targets": [{"tag": leaf.target.tag, "platform": leaf.platform, "stage": leaf.stage.id} for leaf in self.leaves],
        }


def stage_json(s: Stage) -> dict:
    data = {"id": s.id, "key": s.key, "kind": s.kind, "name": s.name,
            "parent": s.parent.id if s.parent else None, "platform": s.platform,
            "needs": [d.id for d in s.dependencies() if d is not s.parent]}
    if s.image:
        data["image"] = s.image
    if s.tag:
        data["tag"] = s.tag
    return data


def compose(recipe: Recipe, t: Target, platform: str) -> Stage:
    """The final stage of one target on one platform, as its recipe composes it."""
    with _recipe_errors(recipe, t):
        return recipe.service(t, recipe.runtime(t, recipe.base(t, platform)))


@contextmanager
def _recipe_errors(recipe: Recipe, t: Target):
    """A recipe that cannot compose a target (say, no torch pin for its version) is a user error that
    names the target and the recipe, not a traceback."""
    try:
        yield
    except (LookupError, ValueError) as e:
        raise UserError(f"{recipe.path} cannot compose {t.tag}: {e}", where=t.where,
                        hint="add a pin for this version range to the recipe, or fix the version in matrix.yaml") from None


def make_plan(targets: Iterable[Target], recipes: dict[str, Recipe]) -> Plan:
    """Plan every target on each of its platforms, sharing identical stages."""
    plan = Plan()
    seen: set[str] = set()
    runtimes: dict[tuple, Stage] = {}  # the runtime depends only on the release and platform
    # Planning allocates many small immutable objects and frees none: the cyclic GC only costs time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        for t in targets:
            recipe = recipes[t.backend]
            with _recipe_errors(recipe, t):
                _plan_target(plan, seen, runtimes, recipe, t)
    finally:
        if enabled:
            gc.enable()
    return plan


def _plan_target(plan: Plan, seen: set[str], runtimes: dict, recipe: Recipe, t: Target) -> None:
    for platform in t.platforms:
        base = recipe.base(t, platform)
        rkey = (t.backend, t.original_backend_version, t.variant, t.python, base.key)
        runtime = runtimes.get(rkey)
        if runtime is None:
            runtime = runtimes[rkey] = recipe.runtime(t, base)
        leaf = recipe.service(t, runtime)
        plan.leaves.append(Leaf(t, platform, leaf))
        plan.naive_stages += _count(leaf, plan.chain_lengths)
        _add(leaf, plan.stages, seen)


def _count(stage: Stage, memo: dict[str, int]) -> int:
    """Stages building this one alone costs: itself and everything it needs, without sharing."""
    if (n := memo.get(stage.key)) is None:
        n = memo[stage.key] = 1 + sum(_count(d, memo) for d in stage.dependencies())
    return n


def _add(stage: Stage, out: list[Stage], seen: set[str]) -> None:
    out += dependencies_first(stage, seen=seen)
