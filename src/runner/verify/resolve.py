"""What each install step of an image asks a resolver, read from the recipe's declared requirements
(runner.compose.requirements): the packages, the indexes and find-links (through the mirror map),
constraints, the target's python and platform, and what earlier steps of the same image installed.

Layering, as `uv pip install` meets an image: what earlier steps installed is preferred (and may
change: the report lists what a step changes), what earlier steps pinned exactly (`torch==2.9.1`) is a
constraint (public versions: it also matches the installed `2.9.1+cu128`), and the earlier steps'
reachable indexes are among the step's own. A step that could not be resolved hands on its declared
`==` pins. A package built from source stands in the resolve
as its published release (`resolve_as`), minus the requirements its source build leaves out
(`without`, as overrides); a built package with no published stand-in is taken as given.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from runner.compose.mirrors import Mirrors
from runner.compose.requirements import Package, Requirements, canonical, expand
from runner.compose.stages import Stage

FORMAT = 1
NEVER = "python_version < '0'"  # an override with this marker removes a requirement everywhere
_GLIBC = {"20.04": "2_31", "22.04": "2_35", "24.04": "2_39"}
_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
# the versions a report shows for a step, when it resolves them
NOTABLE = ("torch", "torchvision", "torchaudio", "torch-npu", "triton", "vllm", "vllm-ascend", "vllm-omni", "sglang",
           "sgl-kernel", "flashinfer-python", "xformers", "lmcache", "mooncake-transfer-engine", "ray", "transformers",
           "vox-box", "mindie", "numpy")


@dataclass(frozen=True)
class Ask:
    """One resolve: what uv is given. Equal asks give equal answers (the cache key)."""

    requirements: tuple[str, ...]
    python: str
    platform: str  # uv's --python-platform, e.g. x86_64-manylinux_2_35
    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    preferences: tuple[str, ...] = ()  # what is installed: kept unless the step needs another version
    build_constraints: tuple[str, ...] = ()
    from_declared: tuple[str, ...] = ()  # packages that must come from the step's own indexes or find-links

    def key(self, uv_version: str) -> str:
        data = json.dumps({"format": FORMAT, "uv": uv_version, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:32]

    def sources(self) -> tuple[str, ...]:
        """Every index and find-links URL the resolve needs (the default index aside)."""
        return tuple(u for u in (self.index_url, *self.extra_index_urls, *self.find_links) if u)


@dataclass(frozen=True)
class Step:
    """An install step of one image, with the ask for it (None when nothing in it can be resolved)."""

    number: int  # 1-based, in build order
    stage: str
    title: str
    requirements: Requirements
    args: dict[str, str]
    notes: tuple[str, ...] = ()


@dataclass
class Answer:
    """What the resolver said about one ask."""

    status: str  # resolved, conflict, not-checked
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version
    sources: dict[str, str] = field(default_factory=dict)  # canonical name -> index it came from
    message: str = ""
    cached: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def python_platform(platform: str, base_image: str) -> str:
    """uv's target platform: the CPU, and the glibc of the base image's Ubuntu (22.04's by default)."""
    found = re.search(r"ubuntu-?(\d\d\.\d\d)", base_image)
    return f"{_ARCH[platform]}-manylinux_{_GLIBC.get(found[1] if found else '', '2_35')}"


def steps_of(leaf: Stage) -> list[Step]:
    """Every declared install step of an image, in build order (build stages included, once)."""
    from runner.compose.requirements import installs

    out = []
    for stage, reqs in installs(leaf).steps:
        args = {a.name: a.value for s in stage.chain() for a in s.args}
        out.append(Step(len(out) + 1, stage.name, reqs.title or stage.name, reqs, args))
    return out


def requirement_of(p: Package, args: dict[str, str]) -> str:
    """What stands for a package in a resolve ("" when a built package has no published stand-in)."""
    if p.built:
        return expand(p.resolve_as, args) if p.resolve_as else ""
    return expand(p.requirement, args)


@dataclass
class Layers:
    """What the steps so far left in the image: every package (canonical name -> version), the ones
    a step pinned exactly, the reachable indexes, and pins of steps that could not be resolved."""

    installed: dict[str, str] = field(default_factory=dict)
    pinned: dict[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # indexes
    find_links: tuple[str, ...] = ()
    unchecked: set[str] = field(default_factory=set)


def ask_for(step: Step, layers: Layers, python: str, platform: str, mirrors: Mirrors,
            given: frozenset[str] = frozenset()) -> tuple[Ask | None, tuple[str, ...]]:
    """The ask for one step on top of the layers below it, and notes on what the resolve takes as
    given (`given`: installed packages left out of the resolve)."""
    reqs, notes = step.requirements, []
    wanted, built = [], []
    for p in reqs.packages:
        text = requirement_of(p, step.args)
        if p.built and p.resolve_as:
            notes.append(f"{p.name} is built from source ({p.built}); its release {text} stands for it")
            if p.extras and "[" not in p.resolve_as:
                notes.append(f"not checked here: the requirements of {p.name}'s extras {', '.join(p.extras)}, which "
                             "only its source tree declares")
        elif p.built:
            built.append(canonical(p.name))
            notes.append(f"{p.name} is built from source ({p.built}) and has no published release to stand for it: taken as given")
        if text:
            wanted.append(text)
    if not wanted:
        return None, tuple(notes)
    upgrade = {canonical(n) for n in reqs.upgrade}
    dropped = {canonical(n) for p in reqs.packages for n in p.without}
    named = {canonical(_name(w)) for w in wanted}
    installed = layers.installed
    constraints = [f"{n}=={_public(v)}" for n, v in sorted(layers.pinned.items())
                   if n not in upgrade and n not in dropped and n not in named and n not in given]
    # what the step holds, as its rendered line holds it: every installed version of those families
    constraints += [f"{n}=={_public(v)}" for n, v in sorted(installed.items()) if reqs.holds(n) and n not in given]
    constraints += [expand(c, step.args) for c in reqs.constraints]
    overrides = [f"{n}=={_public(installed[n])}" if n in installed else f"{n} ; {NEVER}" for n in sorted(dropped)]
    overrides += [f"{n} ; {NEVER}" for n in sorted((set(built) | set(given)) - named - dropped)]
    # what the step holds over a requirement of a package it installs, as its rendered line does (uv's override)
    overrides += [f"{n}=={_public(installed[n])}" for n in reqs.held_over() if n in installed and n not in dropped]
    index = mirrors.url(expand(reqs.index_url, step.args)) if reqs.index_url else ""
    extras = tuple(dict.fromkeys(mirrors.url(expand(u, step.args)) for u in (*reqs.extra_index_urls, *layers.sources)
                                 if mirrors.url(expand(u, step.args)) != index))
    preferences = tuple(f"{n}=={v}" for n, v in sorted(installed.items()) if n not in given and n not in dropped)
    links = tuple(dict.fromkeys((*(mirrors.url(expand(u, step.args)) for u in reqs.find_links), *layers.find_links)))
    ask = Ask(tuple(wanted), python, platform, index, extras, links, tuple(constraints), tuple(overrides),
              preferences, tuple(expand(c, step.args) for c in reqs.build_constraints),
              tuple(canonical(n) for n in reqs.from_declared))
    return ask, tuple(notes)


def declared_pins(step: Step) -> dict[str, str]:
    """The exact pins a step declares (what it hands on when it cannot be resolved)."""
    pins = {}
    for p in step.requirements.packages:
        text = requirement_of(p, step.args)
        found = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*===?\s*([^,;\s*]+)", text)
        if found:
            pins[canonical(found[1])] = found[3]
    return pins


def changes(installed: dict[str, str], pins: dict[str, str]) -> list[str]:
    """What a step changes of what earlier steps installed ("numpy 2.5.5 -> 2.2.6")."""
    return [f"{n} {installed[n]} -> {v}" for n, v in sorted(pins.items())
            if n in installed and _public(installed[n]) != _public(v)]


def not_allowed_prereleases(pins: dict[str, str], allowed: set[str]) -> list[str]:
    """Resolved pre-releases the recipe does not allow for that package."""
    from packaging.version import InvalidVersion, Version

    out = []
    for name, version in sorted(pins.items()):
        try:
            if Version(version).is_prerelease and name not in allowed:
                out.append(f"{name}=={version}")
        except InvalidVersion:
            continue
    return out


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement.strip())[0]


def _public(version: str) -> str:
    return version.split("+", 1)[0]


@dataclass(frozen=True)
class WholeImage:
    """One resolve of every install step of an image as one set, and which steps ask for what."""

    ask: Ask
    owners: dict[str, tuple[int, ...]]  # canonical name -> the steps that name it
    given_by: dict[str, str]  # canonical name -> the unreachable index its step declared


def whole_image_ask(steps: list[Step], python: str, platform: str, mirrors: Mirrors, reachable: set[str],
                    given: frozenset[str] = frozenset(),
                    chosen: Mapping[int, Mapping[str, str]] | None = None) -> WholeImage | None:
    """Every step's requirements in one ask: what the image must hold at once. A later step's
    `upgrade` replaces an earlier step's requirement of that package, `supersedes` overrides the
    named requirement with the superseding step's own (its own package, else the version that step
    resolved to alone, from `chosen`: step number -> its pins), `without` and built packages with no
    published stand-in are left out, and packages of steps whose index cannot be reached are taken
    from the reachable ones (or, in `given`, taken as given)."""
    wanted: dict[str, list[tuple[int, str]]] = {}
    constraints, build, indexes, links, dropped = [], [], [], [], set()
    given_by: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for step in steps:
        reqs = step.requirements
        for name in reqs.upgrade:
            wanted.pop(canonical(name), None)
        urls = [mirrors.url(expand(u, step.args)) for u in (reqs.index_url, *reqs.extra_index_urls) if u]
        away = [u for u in urls if u not in reachable]
        for p in reqs.packages:
            text = requirement_of(p, step.args)
            dropped |= {canonical(n) for n in p.without}
            if not text:
                dropped.add(canonical(p.name))
                continue
            name = canonical(_name(text))
            wanted.setdefault(name, []).append((step.number, text))
            if away:
                given_by[name] = away[0]
        for dist, requirement in reqs.supersedes:
            own = next((requirement_of(p, step.args) for p in reqs.packages
                        if canonical(p.name) == canonical(requirement)), "")
            if not own and (pin := (chosen or {}).get(step.number, {}).get(canonical(requirement))):
                own = f"{canonical(requirement)}=={pin}"  # what the superseding install leaves in the image
            if own:
                overrides[canonical(requirement)] = own
        constraints += [expand(c, step.args) for c in reqs.constraints]
        build += [expand(c, step.args) for c in reqs.build_constraints]
        indexes += [u for u in urls if u in reachable]
        links += [u for u in (mirrors.url(expand(u, step.args)) for u in reqs.find_links) if u in reachable]
    requirements = [text for name, texts in wanted.items() if name not in given for _, text in texts]
    if not requirements:
        return None
    named = set(wanted) - given
    for n in dropped - set(overrides):  # the source build does not require it: the steps' own ask stands
        overrides[n] = wanted[n][-1][1] if n in named else f"{n} ; {NEVER}"
    overrides.update({n: f"{n} ; {NEVER}" for n in given})
    ask = Ask(tuple(dict.fromkeys(requirements)), python, platform, "", tuple(dict.fromkeys(indexes)),
              tuple(dict.fromkeys(links)), tuple(dict.fromkeys(c for c in constraints if canonical(_name(c)) not in given)),
              tuple(v for _, v in sorted(overrides.items())), (), tuple(dict.fromkeys(build)))
    owners = {n: tuple(dict.fromkeys(number for number, _ in texts)) for n, texts in wanted.items()}
    return WholeImage(ask, owners, given_by)


def steps_named(message: str, owners: dict[str, tuple[int, ...]]) -> list[int]:
    """The steps whose packages a resolver's explanation names."""
    words = {canonical(w) for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", message)}
    return sorted({n for name, numbers in owners.items() if name in words for n in numbers})
