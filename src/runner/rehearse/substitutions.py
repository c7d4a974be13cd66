"""Everything a rehearsal runs differently from a release, declared here (and, for the stand-ins of
official images, in runner.rehearse.official_standin) and nowhere else, each with what it replaces, by
what, and why. The report prints every one that applied to an image.

Four kinds, and only these:
- stand-in bases: a vendor base image that cannot be pulled here is replaced by a Debian image made
  with debootstrap, carrying the paths and environment the recipe relies on from that base (its
  `pack/<backend>/standin.yaml`, read by runner.rehearse.standin), and listing what it cannot carry;
- official images: a service's official image that a layered row starts from (runner.compose.official)
  and that cannot be pulled here is replaced by that Debian stand-in with the service's own wheel at
  the row's version installed from the package index, with the torch that wheel pins
  (runner.rehearse.official_standin.OfficialStandin);
- the source mirror: every declared Download and Git URL is served from 127.0.0.1 (a file that cannot
  be had here answers 404, and its step is reported "not fetchable here" with the exact URL);
- device compiles: a build line that needs an accelerator's compiler, or a build whose source is on
  GitHub only (Mooncake, vllm-omni), is replaced by the published artifact of the same version (or the
  release a resolve reads in its place), where the package index has one; where it has none, the
  compile line gives way to a note (DEVICE_ONLY) and the step ends "not runnable here".
Everything else runs as the release writes it."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from runner.compose.requirements import canonical, expand
from runner.compose.stages import Arg, Run, Stage
from runner.model.errors import InfrastructureError
from runner.verify import package_index


@dataclass(frozen=True)
class Substitution:
    """One thing a rehearsal replaces."""

    kind: str  # "stand-in base", "official image", "python", "source mirror", "device compile", "source build"
    what: str
    by: str
    why: str
    # a file of the source that applies it only where it names what is replaced: it applied where a step
    # printed ANSWERED_IN with this file (runner.rehearse.run keeps it then, and only then)
    file: str = ""

    def __str__(self) -> str:
        return f"substituted: {self.what}, by {self.by}, because {self.why}"


@dataclass(frozen=True)
class DeviceCompile:
    """A build that cannot run here (it needs an accelerator's compiler, or its source is on GitHub only),
    and the published artifact that stands for it."""

    stage: str  # the build stage's name
    # the line as the recipe writes it (or the block of lines, from the clone to the wheel's move); group
    # "out" is where the artifact goes, group "indent" (if any) the indent the download keeps
    line: re.Pattern
    artifact: str  # the requirement to download, with the stage's build arguments: vllm==${VLLM_VERSION}
    why: str
    # where the script names the release it builds when no build argument does (group "version": the
    # artifact is pinned to it, so the stand-in is that release and not the index's newest)
    release: re.Pattern | None = None
    kind: str = "device compile"
    # requirements the recipe's build drops from the source it builds, dropped from the published wheel's
    # metadata too (unpacked and packed again with `wheel`, which the build tools carry): what the build
    # would have made requires them no more
    drops: tuple[str, ...] = ()
    compiler: str = "nvcc or hipcc"  # what a device compile needs (said when no wheel stands for it)

    def pinned(self, script: str, published: str = "") -> str:
        """The artifact, at the release the script names where it names one, else at the release a resolve
        reads in the build's place (`published`, the wheel's resolve_as) where that is this artifact."""
        found = self.release.search(script) if self.release else None
        if found:
            return f"{self.artifact}=={found['version']}"
        return published if published and _name(published) == _name(self.artifact) else self.artifact

    def not_runnable(self, script: str) -> tuple[str, bool]:
        """The script with the line giving way to the note that ends its step "not runnable here"."""
        new, n = self.line.subn(lambda m: f'{m.groupdict().get("indent") or ""}echo "{NOT_RUNNABLE} {self.compiler}"', script)
        return new, bool(n)

    def replace(self, script: str, published: str = "") -> tuple[str, bool]:
        """The script with the line replaced by a download of the artifact (and whether it was there)."""
        artifact = self.pinned(script, published)

        def download(m: re.Match) -> str:
            indent = m.groupdict().get("indent") or ""
            line = (f'{indent}python3 -m pip download --no-deps --only-binary=:all: "{artifact}" --dest {m["out"]}'
                    f"  {COMPILE_MARK}")
            if self.drops:  # the one wheel downloaded, unpacked, its requirements edited and packed over it
                # the name alone (fa3-fwd, not fa3-fwd-extra), as a requirement's name is spelled any way
                dropped = " ".join(f"-e '/^Requires-Dist: {re.sub(r'[-_.]', '[-_.]', d)}([^-_.A-Za-z0-9]|$)/d'"
                                   for d in self.drops)
                line += (f"\n{indent}python3 -m wheel unpack --dest /tmp/unpacked {m['out']}/*.whl && "
                         f"sed -E -i {dropped} /tmp/unpacked/*/*.dist-info/METADATA && "
                         f"python3 -m wheel pack --dest-dir {m['out']} /tmp/unpacked/* && rm -rf /tmp/unpacked")
            return line
        new, n = self.line.subn(download, script)
        return new, bool(n)


def _name(requirement: str) -> str:
    """The project a requirement names, compared as indexes compare names (it may hold ${ARGS}, which
    packaging does not parse)."""
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    return canonical(found[0]) if found else ""


@functools.lru_cache(maxsize=None)
def on_the_index(requirement: str) -> bool:
    """Whether the package index has a release that meets `requirement` (one with a build argument in it
    is taken as there: only the build knows its value); an index that does not answer has none."""
    if "$" in requirement:
        return True
    try:
        wanted = Requirement(requirement)
        return any(wanted.specifier.contains(v, prereleases=True) for v in package_index.versions(wanted.name))
    except (InvalidRequirement, InfrastructureError):
        return False


def _clone_to(repository: str, last: str) -> re.Pattern:
    """The lines of a build from its GitHub clone through the line holding `last` (the wheel's move)."""
    return re.compile(rf"^(?P<indent>[ \t]*)git clone [^\n]*/{re.escape(repository)}\.git[^\n]*\n(?:[^\n]*\n)*?"
                      rf"[^\n]*{last}[^\n]*$", re.M)


COMPILE_MARK = "# rehearsal: the published artifact stands for this compile"
# What needs nvcc, hipcc or the Ascend compiler, and what stands for it.
DEVICE_COMPILES = (
    DeviceCompile("vllm-build", re.compile(r"^\s*VLLM_TARGET_DEVICE=(?:cuda|rocm) COMPILE_CUSTOM_KERNELS=1 python3 -m build "
                                           r"--wheel --no-isolation --outdir (?P<out>\S+)$", re.M),
                  "vllm==${VLLM_VERSION}", "vLLM's CUDA and ROCm kernels compile with nvcc or hipcc, which need the "
                  "vendor toolkit; the index's wheel of the same release is that build"),
    DeviceCompile("lmcache-build", re.compile(r"^\s*(?:TORCH_DONT_CHECK_COMPILER_ABI=1 CXX=hipcc BUILD_WITH_HIP=1 )?"
                                              r"python3 -m build --wheel --no-isolation --outdir (?P<out>/workspace/lmcache)$", re.M),
                  "lmcache", "LMCache's kernels compile with nvcc or hipcc; the index's wheel of the release stands for them",
                  re.compile(r'--branch "v(?P<version>[^"$]+)"[^\n]*LMCache\.git')),
    # builds whose source is on GitHub only, which the source mirror cannot serve: from the clone to the
    # wheel's move, replaced by the index's release of the same version (Mooncake's tag) or the one a
    # resolve reads in the build's place (vllm-omni's commits are not releases)
    DeviceCompile("mooncake-build",
                  _clone_to("kvcache-ai/Mooncake", r"\bmv mooncake-wheel/dist/\*\.whl (?P<out>/workspace/mooncake)/?"),
                  "mooncake-transfer-engine", "Mooncake's source is on GitHub only and its transports (HIP, Ascend "
                  "direct) build against the accelerator's toolkit; the index's wheel of the release (its TCP and RDMA "
                  "build) stands for it", re.compile(r'--branch "v(?P<version>[^"$]+)"[^\n]*Mooncake\.git'),
                  kind="source build"),
    DeviceCompile("vllm-omni-build", _clone_to("vllm-project/vllm-omni", r"--outdir (?P<out>/workspace/vllm-omni)\b"),
                  "vllm-omni", "vllm-omni's source at the commit upstream built is on GitHub only; the index's release "
                  "that a resolve reads in its place stands for it, without the CUDA-only fa3-fwd its metadata requires "
                  "and the recipe's sed drops from the source (its wheels are x86_64's only: on arm64 no install "
                  "resolved with it)", kind="source build", drops=("fa3-fwd",)),
)

NOT_RUNNABLE = "runner-rehearsal: not runnable here:"


@dataclass(frozen=True)
class DeviceOnly:
    """A device compile the index publishes no artifact for: its line gives way to a note, so the lines
    before it (the clone through the mirror) run as written, the step ends "not runnable here" naming the
    compiler, and what mounts its output goes without it (said so)."""

    stage: str
    line: re.Pattern  # the build line; group "cd" (if any) the `cd DIR && ` it starts with, which still runs
    compiler: str
    why: str

    def replace(self, script: str) -> tuple[str, bool]:
        new, n = self.line.subn(lambda m: f'{m["indent"]}{m["cd"] or ""}echo "{NOT_RUNNABLE} {self.compiler}"', script)
        return new, bool(n)


DEVICE_ONLY = (
    DeviceOnly("flash-attn-build", re.compile(r"^(?P<indent>[ \t]*)(?P<cd>cd \S+ && )?GPU_ARCHS=\S+ BUILD_TARGET=rocm "
                                              r"python3 -m build --wheel --no-isolation --outdir \S+$", re.M),
               "hipcc", "flash-attn's Composable Kernel build for ROCm compiles with hipcc against ROCm's torch, and "
               "the index publishes no build of flash-attn (only its sdist)"),
    DeviceOnly("aiter-build", re.compile(r"^(?P<indent>[ \t]*)(?P<cd>cd \S+ && )?GPU_ARCHS=\S+ BUILD_TARGET=rocm "
                                         r"PREBUILD_KERNELS=1 python3 setup\.py bdist_wheel --dist-dir \S+$", re.M),
               "hipcc", "AITER's prebuilt kernels compile with hipcc, and the index publishes no build of amd-aiter "
               "(only its sdist)"),
    DeviceOnly("vllm", re.compile(r"^(?P<indent>[ \t]*)(?P<cd>)uv pip install\b[^\n]*\s/tmp/vllm-ascend$", re.M),
               "bisheng", "vllm-ascend's build compiles its Ascend C kernels with CANN's toolchain (CMake, bisheng), "
               "and the index publishes no wheel of the releases the compiled rows build for their python"),
    # the build and the move of its wheels: what follows (the router) runs as written
    DeviceOnly("sgl-kernel-npu-build", re.compile(r"^(?P<indent>[ \t]*)(?P<cd>unset ASCEND_HOME_PATH && cd /tmp/kernel && )"
                                                  r"\./build\.sh\n[ \t]*mv /tmp/kernel/output/[^\n]*$", re.M),
               "bisheng", "sgl-kernel-npu and its DeepEP build with CANN's toolchain, and the index publishes no build "
               "of them"),
    DeviceOnly("lmcache-ascend-build", re.compile(r"^(?P<indent>[ \t]*)(?P<cd>cd /tmp/lmcache-ascend && )python3 -m build "
                                                  r"--wheel --no-isolation --outdir \S+$", re.M),
               "bisheng", "LMCache-Ascend's kvcache-ops compile with CANN's toolchain, and the index publishes no build of it"),
)

# Ubuntu 22.04 packages the recipes install that Debian 12 has no package for: left out of the apt line on
# a stand-in (the stand-in cannot carry them), with the reason
UBUNTU_ONLY = {"libmpdec-dev": "Debian 12 has no package of mpdecimal's headers (Ubuntu 22.04 has)"}
_APT_INSTALL = re.compile(r"^.*\bapt-get install\b.*$", re.M)


def ubuntu_only(script: str) -> tuple[str, list[Substitution]]:
    """An apt step without the Ubuntu-only packages a Debian stand-in cannot install."""
    found: list[Substitution] = []

    def drop(m: re.Match) -> str:
        line = m[0]
        for name, why in UBUNTU_ONLY.items():
            line, n = re.subn(rf"\s{re.escape(name)}(?=\s|$)", "", line)
            if n:
                found.append(Substitution("stand-in base", f"the Ubuntu package {name}", "nothing", why))
        return line

    return _APT_INSTALL.sub(drop, script), found


STANDIN_SUITE = "bookworm"  # Debian 12: the distribution the stand-ins are made of
STANDIN_PYTHON = "3.11"  # Debian 12's python


def python_substitutions(wanted: str) -> list[Substitution]:
    """What the stand-in's python changes: the version, and whose packages that interpreter sees."""
    version = [Substitution("python", f"python {wanted}", f"Debian 12's python {STANDIN_PYTHON}",
                            f"python {wanted} comes from an Ubuntu PPA or the vendor image, and no Debian release "
                            "here has it (the python-version check expects the stand-in's)")]
    return (version if wanted != STANDIN_PYTHON else []) + [
            Substitution("python", "the image python's view of the OS's python packages",
                         "Debian's python3-* packages with python3-cairo added",
                         "on the vendor base the OS's own python (where apt puts python3-gi) is not the image's; "
                         "here it is, so the pycairo that python3-gi's metadata requires is carried for pip check")]


def rewrite_args(stage: Stage, python: str) -> tuple[Arg, ...]:
    """The stage's build arguments with the stand-in's python."""
    return tuple(Arg(a.name, python, a.required, a.doc) if a.name == "PYTHON_VERSION" else a for a in stage.args)


def compile_substitutions(stage: Stage, run: Run, published: str = "", python: str = "") -> tuple[str, list[Substitution]]:
    """A build step with its device compiles and GitHub-only source builds replaced by published wheels.

    Each is replaced where the index has the artifact (given the stand-in's `python`: a wheel of it for
    the stage's platform and that python). A source build it lacks keeps the build, which then ends "not
    fetchable here" or fails as written; a device compile gives way to a note, its step ends "not
    runnable here", and the substitution names the missing wheel. `published`: what a resolve reads in
    place of the stage's wheel (its resolve_as), where the plan says."""
    script, found = run.script, []
    for dc in DEVICE_COMPILES:
        if stage.name != dc.stage or not dc.line.search(script) or not on_the_index(artifact := dc.pinned(script, published)):
            continue
        what = f"{dc.stage}'s compile" if dc.kind == "device compile" else f"{dc.stage}'s build from its source"
        concrete = expand(artifact, {a.name: a.value for a in stage.args})
        if python and "$" not in concrete and not package_index.has_wheel(concrete, stage.platform, python):
            if dc.kind == "device compile":
                script, _ = dc.not_runnable(script)
                found.append(Substitution(dc.kind, what, f"nothing: the step ends not runnable here (it needs {dc.compiler})",
                                          f"it compiles with {dc.compiler}, and the index has no {stage.platform} "
                                          f"wheel of {concrete} for python {python} to stand for it"))
            continue
        script, _ = dc.replace(script, published)
        found.append(Substitution(dc.kind, what, f"the published {concrete}", dc.why))
    for only in DEVICE_ONLY:
        if stage.name == only.stage:
            script, done = only.replace(script)
            if done:
                found.append(Substitution("device compile", f"{only.stage}'s compile", "nothing: the step ends not "
                                          f"runnable here (it needs {only.compiler})", only.why))
    return script, found


@dataclass(frozen=True)
class ReleaseFromWheel:
    """A release file the recipes download from a host unreachable here, which the source mirror
    serves as made from the package index's wheel of the same tool: the wheel carries the tool's own
    binaries, laid out as the release file lays them out."""

    url: re.Pattern  # the URL as a script names it; groups: version, arch ($(uname -m) or a machine name)
    project: str  # the index project whose wheels carry the binaries
    data: str  # the wheel's folder that is the release file's top folder
    top: str  # the release file's top folder, with {version} and {arch}
    why: str

    def substitution(self, version: str, used: str) -> Substitution:
        by = f"{self.project} {used}'s binaries from the package index's wheel"
        if used != version:
            by += f" (the index has no {version}; {used} is the nearest of the same minor release)"
        return Substitution("source mirror", f"{self.project} {version}'s release tarball", by, self.why)


RELEASE_FILES = (
    ReleaseFromWheel(re.compile(r"https://github\.com/Kitware/CMake/releases/download/v(?P<version>\d+\.\d+\.\d+)/"
                                r"cmake-(?P=version)-linux-(?P<arch>\$\(uname -m\)|x86_64|aarch64)\.tar\.gz"),
                     "cmake", "cmake/data/", "cmake-{version}-linux-{arch}",
                     "GitHub's release downloads cannot be had here, and the index's cmake wheels are CMake's "
                     "own Linux builds"),
)


@dataclass(frozen=True)
class IndexElsewhere:
    """A wheel index the recipes name that cannot be reached here, answered by the package index."""

    url: re.Pattern  # the index URL as a requirement step names it
    what: str
    why: str
    # an index that adds builds of its own to the package index's projects (Ascend's dev builds of
    # torch-npu) is answered by the package index only where every release a step pins is published there
    pins_published: bool = False
    # the same answer where a requirements file of the step's own source names the index (vLLM's
    # requirements/rocm-build.txt), which the mirror map cannot reach: a `sed -E` expression that points
    # the file's lines at {index} before the install reads it ("" where the answer depends on the pins)
    in_files: str = ""
    # an index of local builds (PyTorch's CPU index: torch X+cpu) that the package index answers with its
    # build of the same release: each step naming it tells uv (UV_OVERRIDE) that a pin on torch's local build
    # means that release (torch-npu on amd64 pins torch==X+cpu)
    local_builds: bool = False

    def substitution(self, url: str) -> Substitution:
        return Substitution("source mirror", f"{self.what} {url}", "the package index", self.why)

    def answers(self, requirements) -> bool:
        """Whether the package index can answer for this index in a step with these requirements."""
        if not self.pins_published or requirements is None:
            return True
        return all(on_the_index(f"{p.name}{p.spec}") for p in requirements.packages
                   if not p.built and p.spec.startswith("=="))


INDEXES_ELSEWHERE = (
    # its CPU index (/whl/cpu) serves torch's +cpu builds, which the package index does not publish: below
    IndexElsewhere(re.compile(r"https://download\.pytorch\.org/whl/(?!cpu\b)[a-z0-9.]+"), "PyTorch's wheel index",
                   "PyTorch's own index cannot be reached here; the package index publishes the same torch, "
                   "torchvision and torchaudio releases, built for the CUDA release PyTorch chose as its default "
                   "(which may differ from the index the recipe names)",
                   in_files=r"/download\.pytorch\.org\/whl\/cpu\b/!s#https://download\.pytorch\.org/whl/[^[:space:]]*#{index}#g"),
    IndexElsewhere(re.compile(r"https://mirrors\.huaweicloud\.com/ascend/repos/pypi"), "Ascend's PyPI mirror",
                   "that mirror cannot be reached here; it serves the package index's projects and adds Ascend's dev "
                   "builds (of torch-npu), so the package index answers for it where every release the step pins "
                   "is published there too (a dev build is not: that step stays not fetchable here)",
                   pins_published=True),
    IndexElsewhere(re.compile(r"https://download\.pytorch\.org/whl/cpu\b"), "PyTorch's CPU wheel index",
                   "that index cannot be reached here and the package index publishes no `+cpu` builds: its build of "
                   "the same torch release (for CUDA: the same Python API, with CUDA's libraries beside it) stands for "
                   "the `+cpu` one, uv told (UV_OVERRIDE) that a pin on torch X+cpu (torch-npu's, on amd64) means X; "
                   "pip check then names that pin against the stand-in", local_builds=True),
)
OVERRIDE_MARK = "# rehearsal: torch's local build (+cpu) stood for by the same release"


def local_builds_override(script: str, requirements) -> str:
    """A step naming an index of local builds (IndexElsewhere.local_builds), with uv told first that torch is
    the release the image has (else the one the step pins): the package index's build of it stands for X+cpu."""
    urls = (requirements.index_url, *requirements.extra_index_urls, *requirements.find_links) if requirements else ()
    if not any(kind.local_builds and kind.url.match(u) for kind in INDEXES_ELSEWHERE for u in urls):
        return script
    pin = next((p.spec[2:] for p in requirements.packages if p.name == "torch" and p.spec.startswith("==")), "")
    installed = "$(python3 -c 'import importlib.metadata as m; print(m.version(\"torch\"))' 2>/dev/null || true)"
    return (f'runner_torch="{installed}"; runner_torch="${{runner_torch:-{pin}}}"\n'
            'if [ -n "$runner_torch" ]; then printf \'torch==%s\\n\' "${runner_torch%%+*}" > /tmp/runner-overrides.txt; '
            f'export UV_OVERRIDE=/tmp/runner-overrides.txt; fi  {OVERRIDE_MARK}\n{script}')


INDEX_MARK = "# rehearsal: the package index answers for the indexes this file names"
ANSWERED_IN = "runner-rehearsal: answered in the source's file:"
# a pip or uv install from a requirements file (-r FILE): the file may be the source's own
_FROM_FILE = re.compile(r"^(?P<indent>[ \t]*)(?=[^\n]*\bpip install\b)[^\n]*?\s-r\s+(?P<file>[^\s\"';&|]+)", re.M)


def indexes_in_sources(script: str, index: str) -> tuple[str, list[Substitution]]:
    """A script whose installs from requirements files first point the declared indexes those files name
    at the package index (`index`), as the mirror map does for the indexes the recipe names itself."""
    edits = [kind for kind in INDEXES_ELSEWHERE if kind.in_files]
    if not index or not edits:
        return script, []
    files: list[str] = []

    def point(m: re.Match) -> str:
        file = m["file"]
        files.append(file)
        sed = " ".join(f"-e '{kind.in_files.format(index=index)}'" for kind in edits)
        return (f'{m["indent"]}if [ -f "{file}" ]; then sed -i.runner -E {sed} "{file}"; cmp -s "{file}" "{file}.runner" '
                f'|| echo "{ANSWERED_IN} {file}"; rm -f "{file}.runner"; fi  {INDEX_MARK}\n{m[0]}')

    new = _FROM_FILE.sub(point, script)
    return new, [Substitution("source mirror", f"{kind.what} named in {file} (read by the step's install)",
                              "the package index", kind.why + "; the file's index lines are pointed at it before "
                              "the install, as the mirror map does for the indexes a recipe names itself", file)
                 for file in dict.fromkeys(files) for kind in edits]


def mirrored_elsewhere(script: str) -> list[tuple[re.Match, ReleaseFromWheel | IndexElsewhere]]:
    """Every release file and wheel index in a script that the source mirror answers from elsewhere."""
    return [(m, kind) for kind in (*RELEASE_FILES, *INDEXES_ELSEWHERE) for m in kind.url.finditer(script)]
