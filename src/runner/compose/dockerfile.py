"""Dockerfile export of one target's stages, following seed 000's convention.

Two forms: `heredoc` (RUN <<EOF, for BuildKit with Dockerfile 1.4 syntax) and `compat` (the same
scripts as quoted lines, for built-in frontends without heredocs, such as Docker 20.10's).
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from runner.compose.mirrors import Mirrors
from runner.compose.stages import (Arg, CopyFrom, Entrypoint, Env, File, Run, Stage, StageKind, Workdir,
                                   dependencies_first)

SHELL = '["/bin/bash", "-eo", "pipefail", "-c"]'
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH")
BUILD_ARGS = (
    Arg("BUILD_SOURCE", "", False, "org.opencontainers.image.source: where the recipe lives"),
    Arg("BUILD_REVISION", "", False, "org.opencontainers.image.revision: commit of the recipe"),
    Arg("BUILD_CREATED", "", False, "org.opencontainers.image.created: RFC 3339 build time"),
)


@dataclass(frozen=True)
class Rendered:
    text: str
    stage_names: dict[str, str]  # stage key -> name used in the Dockerfile
    target: str  # name of the final stage (for --target)


def stages_for(leaf: Stage, substitutes: Mapping[str, str] | None = None) -> list[Stage]:
    """Every stage the leaf needs, dependencies first, without base stages (they become FROM); a
    substituted stage (an image from the build cache) is kept, and nothing below it."""
    kept = dependencies_first(leaf, lambda s: not (substitutes and s.key in substitutes))
    return [s for s in kept if s.kind != StageKind.BASE]


def render(leaf: Stage, form: str = "heredoc", mirrors: Mirrors = Mirrors(),
           substitutes: Mapping[str, str] | None = None) -> Rendered:
    """A multi-stage Dockerfile that builds `leaf` (a service stage, or any stage a CI job builds)
    for its platform, with the mirror map applied to every script and to the base image; `substitutes`
    maps stage keys to images that already hold them (the build cache), which it starts from instead."""
    if form not in ("heredoc", "compat"):
        raise ValueError(f"unknown Dockerfile form {form!r} (allowed: heredoc, compat)")
    substitutes = substitutes or {}
    every = stages_for(leaf, substitutes)
    stages = [s for s in every if s.key not in substitutes]
    names = _names(every)
    args = _global_args(stages or every, leaf, mirrors)
    owned = {a.name for s in stages for a in s.args}
    build_wide = {a.name for a in args} - owned - {_base_arg(leaf)} - {a.name for a in BUILD_ARGS}
    lines = _header(leaf, stages, args)
    defaults = {a.name: a.value for a in args}
    for stage in every:
        if stage.key in substitutes:
            lines += ["", f"# Stage {names[stage.key]}: from the build cache", f"FROM {substitutes[stage.key]} AS {names[stage.key]}"]
            if stage is leaf:  # this build's labels on the cached layers
                lines += [f"ARG {a.name}" for a in BUILD_ARGS] + [_label_line(leaf)]
            continue
        lines += ["", f"# Stage {names[stage.key]}: {_describe(stage)}"]
        parent = stage.parent
        source = _from(parent, leaf) if parent is None or parent.kind == StageKind.BASE else names[parent.key]
        lines.append(f"FROM {source} AS {names[stage.key]}")
        lines.append(f"SHELL {SHELL}")
        # a stage on another chain (another CUDA release) keeps its own value where it differs from the header's
        lines += [f"ARG {a}" for a in PLATFORM_ARGS] + [f"ARG {a.name}" if defaults.get(a.name) == a.value else
                                                        f"ARG {a.name}={_q(a.value)}" for a in stage.args]
        # build-wide ARGs no stage owns (CMAKE_MAX_JOBS) reach a stage's scripts only when redeclared there
        lines += [f"ARG {a.name}" for a in args if a.name in build_wide and _used(a.name, [stage])]
        own_args = {a.name for a in stage.args}
        for step in stage.steps:
            lines += _step(step, names, form, own_args, mirrors)
        if stage is leaf:
            lines += [f"ARG {a.name}" for a in BUILD_ARGS] + [_label_line(leaf)]
    return Rendered("\n".join(lines) + "\n", names, names[leaf.key])


def _from(base: Stage | None, leaf: Stage) -> str:
    """What a stage on a base image starts FROM: the leaf's base through its build argument, or the
    image itself for a stage on another chain's base (a kernel built on another CUDA release)."""
    if base is None or base.image == _base_image(leaf):
        return f"${{{_base_arg(leaf)}}}"
    return base.image


def _label_line(leaf: Stage) -> str:
    return "LABEL " + " \\\n      ".join(f"{k}={_q(v)}" for k, v in _labels(leaf))


def _labels(leaf: Stage) -> list[tuple[str, str]]:
    oci = [("org.opencontainers.image.source", "${BUILD_SOURCE}"), ("org.opencontainers.image.revision", "${BUILD_REVISION}"),
           ("org.opencontainers.image.version", leaf.tag), ("org.opencontainers.image.created", "${BUILD_CREATED}")]
    return oci + list(leaf.labels)


def _names(stages: list[Stage]) -> dict[str, str]:
    names: dict[str, str] = {}
    used: set[str] = set()
    for s in stages:
        name = re.sub(r"[^a-z0-9._-]", "-", s.name.lower())
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}-{n}", n + 1
        used.add(candidate)
        names[s.key] = candidate
    return names


def _base_arg(leaf: Stage) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", leaf.name.upper()) + "_BASE_IMAGE"


def _base_image(leaf: Stage) -> str:
    return leaf.chain()[0].image


def _global_args(stages: list[Stage], leaf: Stage, mirrors: Mirrors = Mirrors()) -> list[Arg]:
    """Every ARG with its default: the convention's required ones, the stages' own, the build's (the
    base image as the mirror map has it pulled)."""
    seen: dict[str, Arg] = {}
    for s in stages:
        for a in s.args:
            seen.setdefault(a.name, a)
    image = mirrors.image(_base_image(leaf))
    # The default names the runtime's versions (python, backend) it is made of, so
    # --build-arg PYTHON_VERSION=... moves the base image with it.
    for a in stages[0].args if stages else ():
        if a.name.endswith("_VERSION") and a.value:
            image = re.sub(rf"(?<![\d.]){re.escape(a.value)}(?!\.?\d)", "${" + a.name + "}", image)
    seen[_base_arg(leaf)] = Arg(_base_arg(leaf), image, True, "image the runtime starts from")
    seen.setdefault("CMAKE_MAX_JOBS", Arg("CMAKE_MAX_JOBS", "", True, "parallel jobs of native builds"))
    backend = next((a.name[:-len("_VERSION")] for a in stages[0].args if a.name.endswith("_VERSION")
                    and a.name != "PYTHON_VERSION"), "") if stages else ""
    service = _base_arg(leaf)[:-len("_BASE_IMAGE")]

    def rank(a: Arg) -> int:  # the order of the convention's header; the rest keep their stage order
        order = ["PYTHON_VERSION", "CMAKE_MAX_JOBS", f"{backend}_VERSION", f"{backend}_ARCHS",
                 f"{service}_BASE_IMAGE", f"{service}_VERSION"]
        return order.index(a.name) if a.name in order else len(order)

    return sorted(seen.values(), key=rank) + list(BUILD_ARGS)


def _used(name: str, stages: list[Stage]) -> bool:
    """Whether a script reads the ARG, or an ENV of a stage declaring it takes its value."""
    pattern = re.compile(rf"\$\{{?{name}\b")
    for s in stages:
        declared = any(a.name == name for a in s.args)
        for st in s.steps:
            if isinstance(st, Run) and pattern.search(st.script):
                return True
            if declared and isinstance(st, Env) and any(k == name for k, _ in st.values):
                return True
    return False


def _header(leaf: Stage, stages: list[Stage], args: list[Arg]) -> list[str]:
    lines = [f"# {leaf.tag or leaf.name} for {leaf.platform}, generated by runner from pack/ and matrix.yaml.", "#",
             "# Steps:"]
    n = 0
    for s in stages:
        for st in s.steps:
            if isinstance(st, Run):
                n += 1
                lines.append(f"#   {n}. [{s.name}] {st.title or st.script.splitlines()[0][:80]}")
    lines += ["#", "# Build arguments (defaults are this target's values):"]
    width = max(len(a.name) for a in args)
    for a in args:
        lines.append(f"#   {a.name.ljust(width)}  {a.doc}")
    lines.append("")
    decl = [f"ARG {a.name}={_q(a.value)}" for a in args]
    col = max(len(d) for d in decl) + 2
    base = _base_arg(leaf)
    for a, d in zip(args, decl):
        mark = "# REQUIRED" if a.required else "# OPTIONAL"
        if a.required and a.name != base and a.name not in ("PYTHON_VERSION",) and not _used(a.name, stages):
            mark += " (PLACEHOLDER)"
        lines.append(d.ljust(col) + mark)
    return lines


def _describe(stage: Stage) -> str:
    titles = [st.title for st in stage.steps if isinstance(st, Run) and st.title]
    return "; ".join(titles) if titles else stage.kind


def _mounts(run: Run, names: dict[str, str]) -> str:
    cache = "".join(f"--mount=type=cache,target={c.target},id={c.id},sharing={c.sharing} " for c in run.caches)
    return cache + "".join(f"--mount=type=bind,from={names[m.stage.key]},source={m.source},target={m.target},rw "
                           for m in run.mounts)


def _step(step, names: dict[str, str], form: str, own_args: set[str], mirrors: Mirrors) -> list[str]:
    if isinstance(step, Env):
        # An ENV named like one of the stage's ARGs takes the ARG, so --build-arg overrides reach it.
        return ["ENV " + " \\\n    ".join(f"{k}=${{{k}}}" if k in own_args else f"{k}={_q(v)}" for k, v in step.values)]
    if isinstance(step, Workdir):
        return [f"WORKDIR {step.path}"]
    if isinstance(step, Entrypoint):
        return ["ENTRYPOINT [" + ", ".join(f'"{a}"' for a in step.args) + "]"]
    if isinstance(step, CopyFrom):
        return [f"COPY --from={names[step.stage.key]} {step.source} {step.dest}"]
    if isinstance(step, File):
        data = base64.b64encode(step.content.encode()).decode()
        return [f"RUN mkdir -p {shlex.quote(step.path.rsplit('/', 1)[0] or '/')} && echo {data} | base64 -d > {shlex.quote(step.path)} "
                f"&& chmod {step.mode:o} {shlex.quote(step.path)}"]
    assert isinstance(step, Run)
    script = mirrors.text(step.script)
    if form == "heredoc":
        delim = "EOF"
        while re.search(rf"^{delim}$", script, re.M):
            delim += "_"
        return [f"RUN {_mounts(step, names)}<<{delim}", script, delim]
    quoted = " \\\n        ".join(shlex.quote(line) if line else "''" for line in script.splitlines())
    return [f"RUN {_mounts(step, names)}bash -eo pipefail -c \"$(printf '%s\\n' \\\n        {quoted})\""]


def _q(value: str) -> str:
    """Quote an ENV/ARG/LABEL value for the Dockerfile (double quotes; ${VAR} stays expandable)."""
    if value and re.fullmatch(r"[A-Za-z0-9_./:,+=@${}-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
