"""The stage model: how an image is composed, as data that any engine can carry out.

A Stage starts from an image (a base stage) or from a parent stage, and applies steps in order.
Every stage has a content key: the hash of its parent's key, its own steps and its platform, so two
targets that need the same stage get the same key and the plan builds it once.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.compose.components import Component
    from runner.compose.requirements import Requirements


@dataclass(frozen=True, slots=True)
class Cache:
    """A cache volume mounted for one step only, so its bytes never reach a layer."""

    target: str  # path inside the container
    id: str  # volume name; recipes key it per backend and platform
    sharing: str = "locked"  # apt's lock files do not like concurrent writers


@dataclass(frozen=True, slots=True)
class Mount:
    """Another stage's folder mounted read-write for one step only (build outputs to install), so
    nothing of it stays in a layer."""

    stage: Stage
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class Run:
    """A bash script run with `-eo pipefail`, with its cache and stage mounts. An install step also
    carries the Python requirements its script was rendered from (runner.compose.requirements)."""

    script: str
    caches: tuple[Cache, ...] = ()
    title: str = ""  # one line for the Dockerfile header and progress output
    requirements: Requirements | None = field(default=None, compare=False)
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True, slots=True)
class Env:
    """Environment variables set in the image."""

    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class File:
    """A file written into the image (small scripts, wrappers, patches)."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class CopyFrom:
    """Files copied from another stage (e.g. wheels from a build stage)."""

    stage: Stage
    source: str
    dest: str


@dataclass(frozen=True, slots=True)
class Workdir:
    path: str


@dataclass(frozen=True, slots=True)
class Entrypoint:
    args: tuple[str, ...]


Step = Run | Env | File | CopyFrom | Workdir | Entrypoint


@dataclass(frozen=True, slots=True)
class Arg:
    """A build argument: its value is fixed by the target; it is documented in Dockerfile exports."""

    name: str
    value: str
    required: bool = True
    doc: str = ""


class StageKind(StrEnum):
    """The kinds of stage the plan, the schedule and the checks tell apart. A recipe's build stages
    have kinds of their own, named <what>-build ("vllm-build"): see Stage.compiles."""

    BASE = "base"  # an image the build starts FROM
    RUNTIME = "runtime"  # what every service of a backend release shares
    TORCH = "torch"
    SERVICE = "service"  # a target's image
    VLLM_BUILD = "vllm-build"  # kernels and vLLM compiled from source
    SGLANG_BUILD = "sglang-build"

    @staticmethod
    def compiles_in(kind: str) -> bool:
        """Whether stages of this kind compile (their outputs are mounted into an install, never shipped)."""
        return kind.endswith("-build")


@dataclass(frozen=True, slots=True, eq=False)
class Stage:
    """One stage of an image: its kind is a StageKind or a recipe's own <what>-build kind."""

    kind: str
    name: str
    platform: str
    parent: Stage | None = None
    image: str = ""  # base stages only: the image reference
    steps: tuple[Step, ...] = ()
    args: tuple[Arg, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # target labels; the build adds source/revision/created
    tag: str = ""  # service stages: the target's multi-arch tag
    components: tuple[Component, ...] = ()  # what this stage puts in the image
    key: str = field(default="", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _content_key(self))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def id(self) -> str:
        """Short, stable identifier: the kind, name and the first 12 hex digits of the key."""
        return f"{self.name}-{self.key[:12]}"

    @property
    def compiles(self) -> bool:
        """A build stage: it compiles, and what it leaves is mounted into another stage's install."""
        return StageKind.compiles_in(self.kind)

    def chain(self) -> list[Stage]:
        """This stage and its ancestors, base first."""
        out: list[Stage] = []
        node: Stage | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def dependencies(self) -> list[Stage]:
        """Stages this one needs built first: its parent and the stages it copies from."""
        deps = [self.parent] if self.parent else []
        deps += [s.stage for s in self.steps if isinstance(s, CopyFrom)]
        deps += [m.stage for s in self.steps if isinstance(s, Run) for m in s.mounts]
        return list(dict.fromkeys(deps))

    def env(self) -> dict[str, str]:
        """Environment in effect at the end of this stage (inherited from parents)."""
        result = self.parent.env() if self.parent else {}
        for step in self.steps:
            if isinstance(step, Env):
                result.update(step.values)
        return result

    def entrypoint(self) -> tuple[str, ...]:
        for stage in reversed(self.chain()):
            for step in reversed(stage.steps):
                if isinstance(step, Entrypoint):
                    return step.args
        return ()


_STEP_PARTS = {
    Run: lambda s: ("run", s.script, *(f"{c.target}\x01{c.id}\x01{c.sharing}" for c in s.caches),
                    *(f"{m.stage.key}\x01{m.source}\x01{m.target}" for m in s.mounts)),
    Env: lambda s: ("env", *(f"{k}={v}" for k, v in s.values)),
    CopyFrom: lambda s: ("copy", s.stage.key, s.source, s.dest),
    File: lambda s: ("file", s.path, s.content, str(s.mode)),
    Workdir: lambda s: ("workdir", s.path),
    Entrypoint: lambda s: ("entrypoint", *s.args),
}


def dependencies_first(root: Stage, descend: Callable[[Stage], bool] | None = None,
                       seen: set[str] | None = None) -> list[Stage]:
    """Every stage `root` needs, itself included, each once and after the stages it needs; a stage for
    which `descend` says no is listed without what is below it. `seen` (stage keys) is shared by walks
    that continue one another, and what they listed already is not listed again."""
    seen = set() if seen is None else seen
    out: list[Stage] = []

    def visit(s: Stage) -> None:
        if s.key in seen:
            return
        seen.add(s.key)
        if descend is None or descend(s):
            for d in s.dependencies():
                visit(d)
        out.append(s)

    visit(root)
    return out


def _content_key(stage: Stage) -> str:
    # Fields joined with separators that cannot occur in them (NUL: scripts and values are C strings
    # to the shell); cheaper than JSON or repr on the large scripts, and as unambiguous.
    parts = [stage.parent.key if stage.parent else "", stage.kind, stage.name, stage.platform, stage.image]
    parts += [f"{a.name}={a.value}" for a in stage.args]
    for step in stage.steps:
        parts.append("\x02")
        parts.extend(_STEP_PARTS[type(step)](step))
    parts.append("\x03")
    parts += [f"{k}={v}" for k, v in stage.labels]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class StageBuilder:
    """Reads top to bottom like a Dockerfile stage: StageBuilder(...).env(...).run(...).build()."""

    def __init__(self, kind: str, name: str, parent: Stage, **extra) -> None:
        self._kind, self._name, self._parent = kind, name, parent
        self._steps: list[Step] = []
        self._args: list[Arg] = []
        self._extra = extra

    @property
    def platform(self) -> str:
        return self._parent.platform

    def arg(self, name: str, value: str, *, required: bool = True, doc: str = "") -> StageBuilder:
        self._args.append(Arg(name, value, required, doc))
        return self

    def env(self, **values: str) -> StageBuilder:
        self._steps.append(Env(tuple(values.items())))
        return self

    def run(self, script: str, *, caches: Iterable[Cache] = (), title: str = "",
            mounts: Iterable[Mount] = (), holds: Requirements | None = None) -> StageBuilder:
        """A step running its own script; `holds` declares what the image holds after it without the
        step installing it (an official image's service, which the step checks): the resolver starts
        later steps from it."""
        self._steps.append(Run(_dedent(script), tuple(caches), title, holds, tuple(mounts)))
        return self

    def install(self, requirements: Requirements, *, caches: Iterable[Cache] = (), before: str = "",
                after: str = "", mounts: Iterable[Mount] = ()) -> StageBuilder:
        """A step that installs declared Python requirements (its shell is rendered from them)."""
        script = "\n".join(s for s in (_dedent(before), requirements.command(), _dedent(after)) if s)
        self._steps.append(Run(script, tuple(caches), requirements.title, requirements, tuple(mounts)))
        return self

    def component(self, *components: Component) -> StageBuilder:
        """Record what this stage puts in the image (listed by `runner components`, smoke-checked)."""
        self._extra["components"] = (*self._extra.get("components", ()), *components)
        return self

    def file(self, path: str, content: str, mode: int = 0o644) -> StageBuilder:
        self._steps.append(File(path, content, mode))
        return self

    def copy_from(self, stage: Stage, source: str, dest: str) -> StageBuilder:
        self._steps.append(CopyFrom(stage, source, dest))
        return self

    def workdir(self, path: str) -> StageBuilder:
        self._steps.append(Workdir(path))
        return self

    def entrypoint(self, *args: str) -> StageBuilder:
        self._steps.append(Entrypoint(tuple(args)))
        return self

    def labels(self, pairs: Iterable[tuple[str, str]]) -> StageBuilder:
        self._extra["labels"] = tuple(pairs)
        return self

    def build(self) -> Stage:
        return Stage(kind=self._kind, name=self._name, platform=self._parent.platform, parent=self._parent,
                     steps=tuple(self._steps), args=tuple(self._args), **self._extra)


@lru_cache(maxsize=4096)
def base_stage(image: str, platform: str) -> Stage:
    """The vendor image a target starts from."""
    return Stage(kind=StageKind.BASE, name="base", platform=platform, image=image)


@lru_cache(maxsize=4096)
def _dedent(script: str) -> str:
    return textwrap.dedent(script).strip("\n")
