"""Python requirements as data: what a step installs (packages with pins and extras), from where
(index, extra indexes, find-links), under which constraints (install and build), and which packages
may resolve to a pre-release. The step's shell is rendered from this declaration, so what
`runner resolve` checks is exactly what the build runs.

A package built from source in an earlier stage (vLLM from its tag, vllm-ascend, SGLang) is declared
with where it comes from (`built`) and what stands for it in a resolve (`resolve_as`: the release's
published metadata on the index, e.g. "vllm==0.14.1"), and, where the source build drops part of that
metadata (vLLM built for device "empty" brings no torch), which of its requirements to leave out.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from runner.compose.shell import word
from runner.compose.stages import Stage

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    """A package name as indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Package:
    """One requirement: `name[extras]spec ; marker`, or a local/VCS source resolved as something else."""

    name: str
    spec: str = ""  # "==2.9.1", ">=0.46.1,<1"
    extras: tuple[str, ...] = ()
    marker: str = ""  # "platform_machine == 'x86_64'"
    built: str = ""  # what the step really installs when not from an index: "/workspace/wheels/*.whl"
    resolve_as: str = ""  # what stands for `built` in a resolve: "vllm==0.14.1"
    without: tuple[str, ...] = ()  # requirements of resolve_as the source build does not bring
    prerelease: bool = False  # pinned to a pre-release on purpose (say why in the recipe)

    @property
    def requirement(self) -> str:
        """The requirement as a resolver reads it."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        marker = f" ; {self.marker}" if self.marker else ""
        return f"{self.name}{extras}{self.spec}{marker}"

    @property
    def installed(self) -> str:
        """What the step's command line names: the requirement, or the built source."""
        return self.built or self.requirement


def pkg(text: str, *, built: str = "", resolve_as: str = "", without: Iterable[str] = (),
        prerelease: bool = False, extras: Iterable[str] = ()) -> Package:
    """A Package from requirement text: "torch==2.9.1", "ray[client,default]>=2.47.1,<=2.48.0"."""
    given = tuple(extras)
    text, _, marker = text.partition(";")
    text = text.strip()
    name = _NAME.match(text)
    if not name:
        raise ValueError(f"not a requirement: {text!r}")
    rest = text[name.end():]
    written: tuple[str, ...] = ()  # the extras the requirement text itself names
    if rest.startswith("["):
        inner, _, rest = rest[1:].partition("]")
        written = tuple(e.strip() for e in inner.split(",") if e.strip())
    return Package(name[0], rest.strip(), (*written, *given), marker.strip(), built, resolve_as, tuple(without), prerelease)


@dataclass(frozen=True)
class Requirements:
    """What one install step installs, and how."""

    packages: tuple[Package, ...]
    index_url: str = ""  # replaces the default index
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()  # flat folders of wheels (not indexes)
    constraints: tuple[str, ...] = ()  # pins that apply without installing anything
    build_constraints: tuple[str, ...] = ()  # pins for the isolated builds of sdists
    no_build_isolation: bool = False
    upgrade: tuple[str, ...] = ()  # packages an earlier step installed that this one may change
    title: str = ""
    installer: str = "uv"  # "pip" before uv is there (the runtime's own build tools)
    prereleases: tuple[str, ...] = ()  # dependencies published only as pre-releases (say which in the recipe)
    from_declared: tuple[str, ...] = ()  # packages that must come from this step's own index or find-links
    # installed distributions whose requirements this step knowingly overrides, and which requirements:
    # (("vllm", "flashinfer-python"),) where an SGLang image's FlashInfer replaces its vLLM's
    supersedes: tuple[tuple[str, str], ...] = ()
    reinstall: tuple[str, ...] = ()  # installed packages this step replaces even at the same version
    # name prefixes of installed families this step keeps at the versions it finds (OpenTelemetry's
    # packages move in lockstep: a beta exporter taken at its newest moves the SDK under the image's own
    # exporters); they become constraints read from the environment when the step runs
    holds_installed: tuple[str, ...] = ()
    # installed distributions whose own requirements this step keeps (the official image's service: an
    # install that resolves alone would otherwise move what the service requires, as vllm-omni's newest
    # diffusers moved transformers to 5.x under vLLM 0.15's `transformers<5`); constraints read from
    # their metadata when the step runs
    holds_requirements_of: tuple[str, ...] = ()

    def allowed_prereleases(self) -> set[str]:
        return {canonical(p.name) for p in self.packages if p.prerelease} | {canonical(n) for n in self.prereleases}

    def options(self) -> list[str]:
        """The resolver options this declaration asks for (uv pip spelling)."""
        out: list[str] = []
        if self.index_url:
            out += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            out += ["--extra-index-url", url]
        for url in self.find_links:
            out += ["--find-links", url]
        if self.no_build_isolation:
            out.append("--no-build-isolation")
        for name in self.reinstall:
            out += ["--reinstall-package", name]
        # Pre-releases: uv's default takes one only where a requirement's own specifier names one, so
        # a package allowed to be a pre-release is pinned to it explicitly (prerelease=True says so).
        return out

    def held_over(self) -> tuple[str, ...]:
        """Requirements this step supersedes with the installed version it holds: a package it installs
        asks for another version of a held family's member, and the image's version wins (uv's override)."""
        own = {canonical(p.name) for p in self.packages}
        return tuple(dict.fromkeys(canonical(r) for _, r in self.supersedes
                                   if self.holds(r) and canonical(r) not in own and self.installer == "uv"))

    def command(self, *, constraints_file: str = "/tmp/runner-constraints.txt",
                build_constraints_file: str = "/tmp/runner-build-constraints.txt",
                overrides_file: str = "/tmp/runner-overrides.txt") -> str:
        """The shell that installs this declaration (uv into the system python)."""
        lines = []
        over = self.held_over()
        if self.constraints:
            lines.append(_heredoc(constraints_file, self.constraints))
        elif self.holds_installed or self.holds_requirements_of:
            lines.append(f": > {constraints_file}")
        if self.holds_installed:
            lines.append(self._hold_line(constraints_file, self.holds_installed))
        if self.holds_requirements_of:
            lines.append(_requirements_of(self.holds_requirements_of, constraints_file))
        if over:
            lines.append(self._hold_line(overrides_file, over, exact=True))
        if self.build_constraints:
            lines.append(_heredoc(build_constraints_file, self.build_constraints))
        argv = ["uv", "pip", "install", *self.options()] if self.installer == "uv" else \
            ["python3", "-m", "pip", "install", *self.options()]
        if self.constraints or self.holds_installed or self.holds_requirements_of:
            argv += ["--constraint", constraints_file]
        if over:
            argv += ["--override", overrides_file]
        if self.build_constraints:
            argv += ["--build-constraint", build_constraints_file]
        words = " ".join(shlex.quote(a) for a in argv)
        names = " ".join(p.installed if p.built else _quote(p.installed) for p in self.packages)
        lines.append(f"{words} {names}")
        if self.constraints or self.build_constraints or self.holds_installed or self.holds_requirements_of:
            lines.append(f"rm -f {constraints_file} {build_constraints_file}" + (f" {overrides_file}" if over else ""))
        return "\n".join(lines)

    def _hold_line(self, path: str, names: tuple[str, ...], *, exact: bool = False) -> str:
        """The shell that writes the installed versions of `names` to `path`: name prefixes (the held
        families, added to the constraints), or exact names (`exact`: a file of their own, the overrides).

        None installed holds nothing; a failing freeze fails the step; a direct-URL or editable install
        (`name @ file://...`, `-e ...`) is not held."""
        pattern = "|".join(re.escape(canonical(n)).replace("\\-", "[-_.]") for n in names)
        freeze = "uv pip freeze" if self.installer == "uv" else "python3 -m pip list --format=freeze"
        tail = "==" if exact else "[^=@ ]*=="
        return f"{freeze} | {{ grep -iE '^({pattern}){tail}' || true; }} {'>' if exact else '>>'} {path}"

    def holds(self, name: str) -> bool:
        """Whether this step keeps an installed distribution at the version it finds."""
        return any(canonical(name).startswith(canonical(n)) for n in self.holds_installed)


# what an installed distribution requires (its extras' requirements and direct URLs left out, extras
# dropped from the names), as constraint lines; no backslash, as the text sits in a Dockerfile heredoc
_REQUIREMENTS_OF = """import importlib.metadata as md
for name in {names!r}:
    try:
        found = md.requires(name) or []
    except md.PackageNotFoundError:
        continue
    for r in found:
        spec, _, marker = r.partition(";")
        if "extra" in marker or "@" in spec:
            continue
        head, bracket, rest = spec.partition("[")
        spec = head + rest.partition("]")[2] if bracket else spec
        print(spec.strip() + (";" + marker if marker else ""))"""


def _requirements_of(names: tuple[str, ...], constraints_file: str) -> str:
    body = _REQUIREMENTS_OF.format(names=tuple(names))
    return f"python3 - >> {constraints_file} <<'RUNNER_HOLD'\n{body}\nRUNNER_HOLD"


def _quote(text: str) -> str:
    """A requirement as one shell word, its ${ARG} references left to expand (bare when it is plain)."""
    return text if re.fullmatch(r"[A-Za-z0-9._=,+-]*(\$\{[A-Z0-9_]+\}[A-Za-z0-9._=,+-]*)*", text) else word(text)


def expand(text: str, args: dict[str, str]) -> str:
    """A requirement with its ${ARG} references filled from the stage's build arguments."""
    return re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: args.get(m[1], m[0]), text)


def _heredoc(path: str, lines: Iterable[str]) -> str:
    body = "\n".join(lines)
    return f"cat > {path} <<'RUNNER_PINS'\n{body}\nRUNNER_PINS"


@dataclass(frozen=True)
class Installs:
    """The install steps of one image, in build order, with the stage each belongs to."""

    steps: tuple[tuple[Stage, Requirements], ...] = field(default_factory=tuple)


def installs(leaf: Stage) -> Installs:
    """Every declared install of a leaf's image, base first (copy sources included, once)."""
    from runner.compose.stages import Run, dependencies_first

    found = [(stage, step.requirements) for stage in dependencies_first(leaf) for step in stage.steps
             if isinstance(step, Run) and step.requirements is not None]
    return Installs(tuple(found))


def allowed_prereleases(leaf: Stage) -> set[str]:
    """Packages the leaf's recipe lets resolve to a pre-release (canonical names)."""
    return set().union(*(r.allowed_prereleases() for _, r in installs(leaf).steps)) if installs(leaf).steps else set()


def superseded(leaf: Stage) -> dict[str, set[str]]:
    """Installed distribution -> requirements of it the leaf's recipe knowingly overrides."""
    out: dict[str, set[str]] = {}
    for _, r in installs(leaf).steps:
        for dist, requirement in r.supersedes:
            out.setdefault(canonical(dist), set()).add(canonical(requirement))
    return out
