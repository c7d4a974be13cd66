"""The fewest target-platforms of a selection that together run every distinct recipe script once:
what `runner rehearse --cover` builds, so one rehearsal has run every script the release would run
for that selection, without building every image (the seed matrix: 137 scripts in 144 target-platforms)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from runner.compose.plan import Leaf, make_plan
from runner.compose.stages import Run
from runner.model.targets import Target

# Rehearsals here build other platforms under emulation (qemu), many times slower: a script that the
# preferred platform's images also run is rehearsed there.
PREFERRED_PLATFORM = "linux/amd64"


def scripts(leaf: Leaf) -> frozenset[str]:
    """Every RUN script a target-platform's build runs, as the recipe writes it (what coverage counts)."""
    from runner.compose.dockerfile import stages_for

    return frozenset(st.script for s in stages_for(leaf.stage) for st in s.steps if isinstance(st, Run))


@dataclass(frozen=True)
class Cover:
    """The chosen target-platforms, each with how many scripts it adds, and the plan's figures."""

    chosen: tuple[tuple[Leaf, int], ...]
    scripts: int  # distinct scripts in the selection's plan
    leaves: int  # target-platforms in the selection

    def describe(self) -> str:
        return (f"{len(self.chosen)} of {self.leaves} target-platforms run all {self.scripts} distinct recipe scripts: "
                + ", ".join(f"{leaf.target.tag} on {leaf.platform} (+{n})" for leaf, n in self.chosen))

    def targets(self) -> list[Target]:
        """The chosen targets, each on the platforms chosen for it, in the matrix's order."""
        platforms: dict[str, list[str]] = {}
        order: dict[str, Target] = {}
        for leaf, _ in self.chosen:
            order.setdefault(leaf.target.tag, leaf.target)
            platforms.setdefault(leaf.target.tag, []).append(leaf.platform)
        return [replace(t, platforms=tuple(p for p in t.platforms if p in platforms[tag])) for tag, t in order.items()]


def covering(leaves: Iterable[Leaf], prefer: str = PREFERRED_PLATFORM) -> Cover:
    """Greedy set cover (the largest gain first; ties: fewer scripts to build, then the matrix's order),
    taking the preferred platform's target-platforms first and the others only for the scripts no
    preferred one runs. Greedy is not always the smallest cover, but within a small factor of it, and
    it is deterministic: the same selection rehearses the same images."""
    leaves = list(leaves)
    runs = [scripts(leaf) for leaf in leaves]
    everything = frozenset().union(*runs)
    left, chosen = set(everything), []
    for pool in ([i for i, leaf in enumerate(leaves) if leaf.platform == prefer], range(len(leaves))):
        while True:
            gains = [(len(runs[i] & left), -len(runs[i]), -i) for i in pool]
            if not gains or max(gains)[0] == 0:
                break
            best = -max(gains)[2]
            chosen.append((leaves[best], len(runs[best] & left)))
            left -= runs[best]
    return Cover(tuple(chosen), len(everything), len(leaves))


def cover_targets(targets: list[Target], recipes: dict) -> tuple[list[Target], Cover]:
    """The targets (on their chosen platforms) that cover every distinct script of `targets`' plan."""
    found = covering(make_plan(targets, recipes).leaves)
    return found.targets(), found
