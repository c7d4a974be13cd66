"""The release's own stages, rewritten for a rehearsal: stand-in bases where a base cannot be had, the
declared device-compile substitutions, the stand-in's python, and every script wrapped so that a
step whose failure comes from a file the source mirror could not serve ends "not fetchable here"
(printing the exact URLs) instead of stopping the image; every other failure still fails it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from runner.compose.shell import word
from runner.compose.stages import CopyFrom, File, Mount, Run, Stage, StageKind
from runner.rehearse.substitutions import (Substitution, compile_substitutions, indexes_in_sources, local_builds_override,
                                            rewrite_args, ubuntu_only)

NOT_FETCHABLE = "runner-rehearsal: not fetchable here:"
STANDIN_REPOSITORY = "runner-rehearsal/standin:"
OUTPUTS_STEP = "rehearsal: the folders later stages mount (empty when a build was not fetchable)"
MARK = "# runner-rehearsal step"


def wrap(script: str, mirror: str) -> str:
    """The step's own script in a subshell as the Dockerfile's SHELL runs it, then the verdict: a failure
    while the mirror answered 404 is "not fetchable here" (the URLs printed); any other one fails."""
    ask = (f'{{ curl -fsS "{mirror}/_missed?since=$runner_since" || wget -qO- "{mirror}/_missed?since=$runner_since"; }}'
           " 2>/dev/null")
    return (f"{MARK}\nrunner_since=$(date +%s.%N)\nset +e\n(\nset -eo pipefail\n{script}\n)\nrunner_rc=$?\nset -e\n"
            f'if [ "$runner_rc" -ne 0 ]; then runner_missed=$({ask} || true)\n'
            f'  if [ -n "$runner_missed" ]; then for u in $runner_missed; do echo "{NOT_FETCHABLE} $u"; done; exit 0; fi\n'
            'fi\nexit "$runner_rc"')


@dataclass
class Rewriter:
    """Rewrites stages once each (by content key); `base_for` names the image a base stage becomes."""

    base_for: Callable[[Stage], str]
    python: str
    mirror: str
    index: str = ""  # the package index, which answers for the declared indexes a source's own files name
    substitutions: dict[str, list[Substitution]] = field(default_factory=dict)  # new stage key -> what changed
    originals: dict[tuple[str, int], str] = field(default_factory=dict)  # (new stage key, step) -> original script
    _done: dict[str, Stage] = field(default_factory=dict)
    _outputs: dict[str, set[str]] = field(default_factory=dict)  # stage key -> folders others mount
    _published: dict[str, str] = field(default_factory=dict)  # build stage key -> its wheel's resolve_as

    def on_standin(self, s: Stage) -> bool:
        """Whether the stage's chain starts from a stand-in base."""
        return self.base_for(s.chain()[0]).startswith(STANDIN_REPOSITORY)

    def outputs(self, leaf: Stage) -> None:
        """Note the folders other stages mount or copy from each stage: a build step that is not fetchable
        here ends without its output, so the rehearsed stage makes the folder (empty) for the steps after; and
        what a resolve reads in place of each build stage's wheel, which may stand for a build here."""
        from runner.compose.dockerfile import stages_for

        for s in stages_for(leaf):
            for step in s.steps:
                for m in getattr(step, "mounts", ()):
                    self._outputs.setdefault(m.stage.key, set()).add(m.source)
                    # what a resolve reads in place of the stage's wheel stands for it when it cannot be built
                    for p in (step.requirements.packages if step.requirements else ()):
                        if p.resolve_as and p.built.startswith(m.target + "/"):
                            self._published.setdefault(m.stage.key, p.resolve_as)
                if isinstance(step, CopyFrom):
                    self._outputs.setdefault(step.stage.key, set()).add(step.source)

    def stage(self, s: Stage) -> Stage:
        if (found := self._done.get(s.key)) is not None:
            return found
        if s.kind == StageKind.BASE:
            new = Stage(kind=StageKind.BASE, name="base", platform=s.platform, image=self.base_for(s))
        else:
            subs: list[Substitution] = []
            steps, originals = [], {}
            for i, step in enumerate(s.steps):
                if isinstance(step, Run):
                    script, found = compile_substitutions(s, step, self._published.get(s.key, ""),
                                                          self.python if self.on_standin(s) else "")
                    script, answered = indexes_in_sources(script, self.index)
                    script = local_builds_override(script, step.requirements)
                    found += answered
                    if self.on_standin(s):
                        script, dropped = ubuntu_only(script)
                        found += dropped
                    subs += found
                    mounts = tuple(Mount(self.stage(m.stage), m.source, m.target) for m in step.mounts)
                    steps.append(Run(wrap(script, self.mirror), step.caches, step.title, step.requirements, mounts))
                    originals[i] = step.script
                elif isinstance(step, CopyFrom):
                    steps.append(CopyFrom(self.stage(step.stage), step.source, step.dest))
                else:
                    steps.append(step)
            if folders := sorted(self._outputs.get(s.key, ())):
                steps.append(Run("mkdir -p " + " ".join(word(f) for f in folders),
                                 title=OUTPUTS_STEP))
            args = rewrite_args(s, self.python)
            new = replace(s, parent=self.stage(s.parent) if s.parent else None, steps=tuple(steps), args=args)
            self.substitutions[new.key] = subs
            self.originals.update({(new.key, i): text for i, text in originals.items()})
        self._done[s.key] = new
        return new


def steps_in_order(stage: Stage) -> list[tuple[Stage, int, str]]:
    """(stage, step index, title) of every Dockerfile RUN a stage's build runs, dependencies first, as
    the Dockerfile export writes them (files are RUN lines there too)."""
    from runner.compose.dockerfile import stages_for

    out = []
    for s in stages_for(stage):
        for i, step in enumerate(s.steps):
            if isinstance(step, Run):
                out.append((s, i, step.title or step.script.splitlines()[0][:80]))
            elif isinstance(step, File):
                out.append((s, i, f"write {step.path}"))
    return out
