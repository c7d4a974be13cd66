"""Building blocks the recipes in pack/<backend>/recipe.py share: cache mounts, the shared runtime
(on vendor images too), torch stages, Python installs rendered from declared requirements, service
stage scaffolding, built wheels (a build stage's mount, requirements and components together), patches
and version-range pins. Recipes stay short and read top to bottom.

Build arguments a stage declares are read by its scripts (`${NAME}`), so `--build-arg` changes what
is built; what only describes the image is environment, not a REQUIRED argument."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, wraps
from pathlib import Path
from typing import ParamSpec, TypeVar, overload

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from runner.compose.components import Component, native, python
from runner.compose.requirements import Package, Requirements, pkg
from runner.compose.shell import word
from runner.compose.sources import Download
from runner.compose.commands import consumer_commands
from runner.compose.stages import Cache, Mount, Stage, StageBuilder, StageKind
from runner.model.targets import Target

V = TypeVar("V")  # a pin's value: a version, or a tuple of them
D = TypeVar("D")
P = ParamSpec("P")
TIMEZONE = "Asia/Shanghai"
PATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\.patch")  # names reach a script: nothing a shell reads
CMAKE = Download("cmake", "https://github.com/Kitware/CMake/releases/download/v{version}/cmake-{version}-linux-{arch}.tar.gz",
                 "3.31.7")
UV_SPEC = "uv<=0.9.11"
BUILD_TOOLS = Requirements(tuple(pkg(p) for p in (
    "build", "cmake<4", "ninja<1.11", "setuptools>=77.0.3,<80", "setuptools-scm", "packaging<25", "wheel==0.45.1",
    "pybind11<3", "Cython", "psutil", "pipx<=1.8.0", UV_SPEC)), installer="pip",
    title="the Python build tools and uv, with the image's pip")
# torch held in an install after the torch stage: where the service asks for no torch (CANN's device-empty
# vLLM, SGLang's NPU extras) nothing else holds it, and rehearsing cann8.5-a3-vllm0.14.1 found it replaced by
# the index's CUDA 2.15.0 after the torch stage, which torch-npu's exact pin forbids; `==X` holds +cpu too
def torch_held(torch: str) -> tuple[str, ...]:
    return (f"torch=={torch}",)


# torch's companions, released together with it (an unpinned torchvision resolves to one that needs another torch)
TORCHVISION = {"2.10.0": "0.25.0", "2.9.1": "0.24.1", "2.9.0": "0.24.0", "2.8.0": "0.23.0", "2.7.1": "0.22.1",
               "2.6.0": "0.21.0", "2.5.1": "0.20.1", "2.5.0": "0.20.0", "2.4.1": "0.19.1", "2.1.0": "0.16.0"}

_CACHE_PATHS = {
    "apt": ("/var/cache/apt", "/var/lib/apt/lists"),
    "uv": ("/root/.cache/uv",),
    "pip": ("/root/.cache/pip",),
    "ccache": ("/root/.cache/ccache",),
}
TOOLS_APT = (
    "ca-certificates build-essential binutils bash openssl curl wget aria2 git git-lfs unzip xz-utils tzdata locales "
    "iproute2 iputils-ping ifstat net-tools dnsutils pciutils ipmitool rdma-core rdmacm-utils infiniband-diags "
    "procps sysstat htop tini vim jq bc tree make ninja-build pkg-config ccache software-properties-common gnupg patch"
)
# the C build kit: what native Python packages and the services' own builds link against
DEV_APT = (
    "perl yasm zlib1g-dev libbz2-dev libffi-dev libgdbm-dev libgdbm-compat-dev libssl-dev libsqlite3-dev lcov libomp-dev "
    "libblas-dev liblapack-dev libopenblas-dev libhdf5-dev libxml2 libxslt1-dev libgl1 libglib2.0-0 libgmpxx4ldbl "
    "libncurses5-dev libreadline-dev liblzma-dev tk-dev uuid-dev libmpdec-dev ffmpeg libjpeg-dev libpng-dev "
    "libtiff-dev libwebp-dev libnuma1 libnuma-dev libjemalloc-dev libgrpc-dev libgrpc++-dev libprotobuf-dev "
    "protobuf-compiler protobuf-compiler-grpc libnl-3-dev libnl-route-3-dev libibverbs-dev librdmacm-dev "
    "libibumad-dev libtool ibverbs-utils ibverbs-providers"
)
MPI_APT = "openmpi-bin openmpi-common libopenmpi-dev"  # every backend but CUDA, which brings HPC-X's Open MPI
WITH_CACHES = ("unset UV_NO_CACHE PIP_NO_CACHE_DIR; "
               "export UV_CACHE_DIR=/root/.cache/uv UV_LINK_MODE=copy PIP_CACHE_DIR=/root/.cache/pip")
APT_KEEP = ("rm -f /etc/apt/apt.conf.d/docker-clean; "
            "echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache")
# OpenTelemetry's exporters and conventions are published only as betas; vLLM's tracing pulls them in
OTEL_BETAS = ("opentelemetry-semantic-conventions", "opentelemetry-exporter-http-transport",
              "opentelemetry-exporter-otlp-common", "opentelemetry-exporter-prometheus", "opentelemetry-instrumentation")


# SGLang images start from the release's vLLM 0.14.1 image, and SGLang pins these below what that vLLM
# requires (uv, resolving vLLM 0.14.1 with each SGLang 0.5.4.post3..0.5.8: llguidance <0.8 against
# >=1.3, xgrammar 0.1.27 against 0.1.29, grpcio and grpcio-reflection 1.75.1 against >=1.76,
# outlines-core 0.1.26 via outlines 0.1.11 against 0.2.11). The image serves SGLang, so its pins win:
# the step may change them, and `pip check` allows exactly these requirements of vLLM to be unmet.
SGLANG_OVER_VLLM = ("llguidance", "xgrammar", "grpcio", "grpcio-reflection", "outlines-core")


# uv keeps the Ray the service brought and adds what the consumer's `ray start` needs
RAY_EXTRAS = Requirements((pkg("ray[client,default]"),), title="Ray's client and dashboard extras, on the installed Ray")
RUSTUP = Download("rustup", "https://static.rust-lang.org/rustup/archive/{version}/{arch}-unknown-linux-gnu/rustup-init",
                  "1.28.2")


def rust_toolchain() -> str:
    """The shell that installs a minimal Rust toolchain for this step (the SGLang router's build)."""
    return (f'{RUSTUP.fetch("/tmp/rustup-init", arch="$(uname -m)")} && chmod +x /tmp/rustup-init\n'
            '/tmp/rustup-init -y --profile minimal && rm -f /tmp/rustup-init && export PATH="/root/.cargo/bin:$PATH"')


def max_jobs(gb_per_job: int) -> str:
    """Parallel native-build jobs: CMAKE_MAX_JOBS when given, else every core of the runner as far as
    its available memory gives each job `gb_per_job` GB (a compiler job of nvcc or hipcc takes GBs)."""
    return ('by_memory=$(( $(awk \'/^MemAvailable:/ {print $2}\' /proc/meminfo) / 1048576 / ' f'{gb_per_job} ))\n'
            'export MAX_JOBS="${CMAKE_MAX_JOBS:-$(( by_memory < $(nproc) ? (by_memory < 1 ? 1 : by_memory) : $(nproc) ))}"')


def caches(t: Target, platform: str, *tools: str) -> tuple[Cache, ...]:
    """Cache mounts for package managers, one volume per backend, platform and path, so warm builds
    reuse downloads and nothing of the cache lands in a layer."""
    return _caches(t.backend, platform, tools)


@lru_cache(maxsize=1024)
def _caches(backend: str, platform: str, tools: tuple[str, ...]) -> tuple[Cache, ...]:
    plat = platform.replace("/", "-")
    return tuple(Cache(path, f"runner-{backend}-{plat}-{tool}{f'-{i}' if i else ''}")
                 for tool in tools for i, path in enumerate(_CACHE_PATHS[tool]))


def pick(version: str, pins: Mapping[str, V], what: str = "pin") -> V:
    """The value of the first version range that contains `version`, e.g.
    pick("0.13.0", {">=0.14": "2.9.1", ">=0.11.2": "2.9.0"}) == "2.9.0". New service versions fall
    into an existing range, so adding one is a matrix line, not a recipe edit."""
    for spec, value in pins.items():
        if _contains(spec, version):
            return value
    raise LookupError(f"no {what} for version {version} (ranges: {', '.join(pins)})")


@overload
def pick_or(version: str, pins: Mapping[str, str]) -> str: ...
@overload
def pick_or(version: str, pins: Mapping[str, V], default: D) -> V | D: ...


def pick_or(version: str, pins: Mapping[str, object], default: object = "") -> object:
    """pick(), with `default` (an empty string unless given) for a version no range contains."""
    try:
        return pick(version, pins)
    except LookupError:
        return default


@lru_cache(maxsize=8192)
def _contains(spec: str, version: str) -> bool:
    return SpecifierSet(spec, prereleases=True).contains(Version(version))


def shared(compose_stage: Callable[P, Stage]) -> Callable[P, Stage]:
    """Decorator for recipe functions other targets reuse (SGLang builds on the release's vLLM image,
    kernels on a CUDA release's build stage): equal inputs give the very same Stage, composed once."""
    memo: dict[tuple, Stage] = {}

    @wraps(compose_stage)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Stage:
        if kwargs:  # the memo's key is the positional arguments: a keyword would be left out of it
            raise TypeError(f"{wrapper.__name__}() of a shared stage takes positional arguments only")
        key = tuple(a.key if isinstance(a, Stage) else a for a in args)
        if (found := memo.get(key)) is None:
            found = memo[key] = compose_stage(*args, **kwargs)
        return found

    return wrapper


def runtime_builder(t: Target, base: Stage, *, home: str, extra_apt: str = "", mpi: bool = True,
                    vendor_home: str = "") -> StageBuilder:
    """The runtime every service of a backend release shares, on the vendor's image: OS packages with
    tini, the C build kit, Open MPI (off CUDA), locale and timezone, python at the matrix's version
    with its library registered for the loader, CMake, and the Python build tools with uv. With
    `vendor_home`, the backend's versioned install folder is linked at `home`."""
    p, backend = base.platform, t.backend.upper()
    b = StageBuilder(StageKind.RUNTIME, "runtime", base)
    b.arg("PYTHON_VERSION", t.python, doc="python of the image")
    # required where the base image is named by it; an official service image is named by its service
    b.arg(f"{backend}_VERSION", t.original_backend_version, doc="full backend version",
          required=t.original_backend_version in (base.image or ""))
    b.env(DEBIAN_FRONTEND="noninteractive", LANG="en_US.UTF-8", LANGUAGE="en_US:en", LC_ALL="en_US.UTF-8",
          PYTHON_VERSION=t.python, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
          PIP_ROOT_USER_ACTION="ignore", PIPX_HOME="/root/.local/share/pipx",
          PIPX_LOCAL_VENVS="/root/.local/share/pipx/venvs", UV_NO_CACHE="1", UV_HTTP_TIMEOUT="500",
          UV_INDEX_STRATEGY="unsafe-best-match",
          # every later stage's `uv pip install` goes to the image's python (the torch and build stages
          # come before any service stage: without it uv finds no virtual environment and stops)
          UV_SYSTEM_PYTHON="1")
    b.run(f"""
        {APT_KEEP}
        apt-get update
        apt-get install -y --no-install-recommends {TOOLS_APT} {DEV_APT} {MPI_APT if mpi else ''} {extra_apt}
        localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
        ln -sf /usr/share/zoneinfo/{TIMEZONE} /etc/localtime && echo {TIMEZONE} > /etc/timezone
        """, caches=caches(t, p, "apt"), title="OS packages, tini, the C build kit, locale and timezone")
    b.run(f"""
        {APT_KEEP}
        have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
        if [[ "$have" != "${{PYTHON_VERSION}}" ]]; then
            for _ in 1 2 3; do if add-apt-repository -y ppa:deadsnakes/ppa; then break; fi; sleep 5; done
            apt-get update
            apt-get install -y --no-install-recommends python${{PYTHON_VERSION}} python${{PYTHON_VERSION}}-dev \\
                python${{PYTHON_VERSION}}-venv python${{PYTHON_VERSION}}-gdbm python${{PYTHON_VERSION}}-tk
            update-alternatives --install /usr/bin/python3 python3 /usr/bin/python${{PYTHON_VERSION}} 10
            update-alternatives --install /usr/bin/python python /usr/bin/python${{PYTHON_VERSION}} 10
            python${{PYTHON_VERSION}} -m ensurepip --upgrade
        fi
        # register libpython with the loader in a file of its own, so later ldconfig runs keep it
        python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))' > /etc/ld.so.conf.d/00-python.conf
        ldconfig
        """, caches=caches(t, p, "apt"), title="python ${PYTHON_VERSION}, registered with the loader")
    b.run(f'{CMAKE.fetch(arch="$(uname -m)")} | tar -xz --strip-components=1 -C /usr', title=f"CMake {CMAKE.version}")
    install(b, t, BUILD_TOOLS, tools=("pip",), after='mkdir -p "$PIPX_HOME" "$PIPX_LOCAL_VENVS"')
    if vendor_home:
        versioned = vendor_home.replace(t.original_backend_version, "${" + backend + "_VERSION}")
        b.run(f'if [[ ! -e {home} && -d {versioned} ]]; then ln -s {versioned} {home}; fi', title=f"link {home}")
    b.env(**{f"{backend}_HOME": home, f"{backend}_VERSION": t.original_backend_version})
    b.component(native("tini", "", ["/usr/bin/tini"]), native("cmake", CMAKE.version, ["/usr/bin/cmake"]),
                python("uv", "", imports=()), python("pipx", ""))
    return b


def torch_stage(t: Target, parent: Stage, torch: str, *, index: str = "", extra_indexes: tuple[str, ...] = (),
                find_links: tuple[str, ...] = (), extra: tuple[Package, ...] = (), audio: bool = True,
                name: str = "") -> Stage:
    """torch with torchvision (and torchaudio) of the same release, numpy and scipy: a stage of its own
    so every service version needing the same torch from the same place shares it."""
    return _torch_stage(t.backend, parent, torch, index, extra_indexes, find_links, extra, audio, name)


@shared
def _torch_stage(backend: str, parent: Stage, torch: str, index: str, extra_indexes: tuple[str, ...],
                 find_links: tuple[str, ...], extra: tuple[Package, ...], audio: bool, name: str) -> Stage:
    packages = [pkg("torch==${TORCH_VERSION}"), pkg(f"torchvision=={TORCHVISION[torch]}")]
    if audio:
        packages.append(pkg("torchaudio==${TORCH_VERSION}"))
    reqs = Requirements((*packages, *extra), index_url=index, extra_index_urls=extra_indexes, find_links=find_links,
                        from_declared=("torch",) if index or extra_indexes or find_links else (),
                        title=f"torch {torch}" + (f" from {index or extra_indexes[0]}" if index or extra_indexes else ""))
    common = Requirements((pkg("numpy"), pkg("scipy")), title="numpy and scipy")
    plat = parent.platform.replace("/", "-")
    uv = (Cache("/root/.cache/uv", f"runner-{backend}-{plat}-uv"),)
    return (StageBuilder(StageKind.TORCH, name or f"torch{torch}", parent)
            .arg("TORCH_VERSION", torch, doc="torch release")
            .install(reqs, caches=uv, before=WITH_CACHES)
            .install(common, caches=uv, before=WITH_CACHES)
            .component(python("torch", torch, imports=("torch",)),
                       python("torchvision", TORCHVISION[torch]))
            .build())


def install(b: StageBuilder, t: Target, reqs: Requirements, *, before: str = "", after: str = "",
            tools: tuple[str, ...] = ("uv",), mounts=()) -> StageBuilder:
    """A step that installs declared requirements with the uv cache (and any build stages' outputs)
    mounted for it only."""
    before = WITH_CACHES + ("\n" + textwrap.dedent(before).strip("\n") if before else "")
    return b.install(reqs, caches=caches(t, b.platform, *tools), before=before, after=after, mounts=mounts)


@dataclass(frozen=True)
class BuiltWheels:
    """What one build stage brings to an install step, kept together: its output folder mounted for
    the step, the requirements that name its wheels (and what they bring from the index), and the
    components they put in the image."""

    mount: Mount
    packages: tuple[Package, ...]
    components: tuple[Component, ...] = ()
    after: str = ""  # shell the install step runs once the wheels are in (registering their libraries)
    before: str = ""  # shell the install step runs first (the environment an sdist among them builds with)


def built_wheels(stage: Stage, folder: str, *wheels: tuple[str, str] | Package, components: Iterable[Component] = (),
                 resolve_as: str = "", without: Iterable[str] = (), also: Iterable[Package] = (),
                 after: str = "", before: str = "") -> BuiltWheels:
    """A build stage's wheels in /workspace/<folder>, mounted at /mnt/<folder>: each wheel is
    (distribution, file pattern in the folder) or a ready Package; `resolve_as` and `without` describe the
    first wheel (what a resolve reads in its place), `also` are index packages installed with them."""
    def package(w: tuple[str, str] | Package, first: bool) -> Package:
        if isinstance(w, Package):
            return w
        dist, pattern = w
        return pkg(dist, built=f"/mnt/{folder}/{pattern}", resolve_as=resolve_as if first else "",
                   without=tuple(without) if first else ())

    return BuiltWheels(Mount(stage, f"/workspace/{folder}", f"/mnt/{folder}"),
                       (*(package(w, i == 0) for i, w in enumerate(wheels)), *also), tuple(components), after, before)


def install_built(b: StageBuilder, t: Target, built: Iterable[BuiltWheels], **requirements) -> StageBuilder:
    """One install step for several build stages' wheels (their folders mounted for that step only);
    the components they bring are recorded in their order. `requirements`: Requirements' options."""
    built = list(built)
    install(b, t, Requirements(tuple(p for w in built for p in w.packages), **requirements),
            mounts=[w.mount for w in built], after="\n".join(w.after for w in built if w.after),
            before="\n".join(w.before for w in built if w.before))
    components = tuple(c for w in built for c in w.components)
    return b.component(*components) if components else b


def at_least(version: str, floor: str) -> bool:
    return Version(version) >= Version(floor)


def service_builder(t: Target, parent: Stage, *, name: str | None = None, kind: str = StageKind.SERVICE) -> StageBuilder:
    """A service stage (or a build stage of one, with another kind), with uv set to the system python."""
    b = StageBuilder(kind, name or t.service, parent, **({"tag": t.tag} if kind == StageKind.SERVICE else {}))
    b.arg(f"{t.service.upper()}_VERSION", t.service_version, doc=f"{t.service} version")
    b.env(UV_SYSTEM_PYTHON="1")
    return b


def finish(b: StageBuilder, t: Target, **env: str) -> Stage:
    """Close a service stage the way every image ends: the commands GPUStack runs that the release
    lacks, its environment, WORKDIR / and tini."""
    consumer_commands(b, t)
    b.env(UV_SKIP_WHEEL_FILENAME_CHECK="1", **{f"{t.service.upper()}_VERSION": t.service_version,
                                               f"{t.backend.upper()}_ARCHS": " ".join(t.archs)}, **env)
    b.workdir("/")
    b.entrypoint("tini", "--")
    return b.labels(target_labels(t)).build()


def add_patches(b: StageBuilder, t: Target, recipe_dir: Path, where: str, service: str = "") -> StageBuilder:
    """Apply the patches for this service version to the installed package or source tree `where` (a
    shell expression), in file-name order: pack/_patches/<service>/<folder>/*.patch (every backend
    whose recipe applies patches) and pack/<backend>/patches/<service>/<folder>/*.patch, where
    <folder> is `all`, the exact version, or an inclusive range `0.11.2..0.14.1` (open: `0.11.2..`).
    A patch that does not apply (or is already upstream) fails the build."""
    service = service or t.service
    found = _patches(recipe_dir, service, t.service_version)
    for name, text in found:
        b.file(f"/workspace/patches/{service}/{name}", text)
    if found:
        lines = "\n".join(f"patch -p1 --forward < {word(f'/workspace/patches/{service}/{name}')}" for name, _ in found)
        b.run(f'cd {where}\n{lines}\nrm -rf /workspace/patches',
              title=f"apply {len(found)} patch(es) to {service} {t.service_version}")
    return b


@lru_cache(maxsize=1024)
def _patches(recipe_dir: Path, service: str, version: str) -> tuple[tuple[str, str], ...]:
    found: list[Path] = []
    for root in (recipe_dir.parent / "_patches" / service, recipe_dir / "patches" / service):
        for folder in sorted(root.iterdir()) if root.is_dir() else ():
            if folder.is_dir() and _applies(folder.name, version):
                found += folder.glob("*.patch")
    for p in found:
        if not PATCH_NAME.fullmatch(p.name):
            raise ValueError(f"patch file {p}: malformed name {p.name!r} (allowed: letters, digits and . _ + - "
                             "ending in .patch)")
    return tuple((p.name, p.read_text()) for p in sorted(found, key=lambda p: p.name))


def _applies(folder: str, version: str) -> bool:
    if folder in ("all", version):
        return True
    low, sep, high = folder.partition("..")
    return bool(sep) and Version(low) <= Version(version) and (not high or Version(version) <= Version(high))


def site_packages(dist: str) -> str:
    """A shell expression for the folder an installed distribution lives in."""
    return f'"$(python3 -m pip show {dist} | sed -n \'s/^Location: //p\')"'


def target_labels(t: Target) -> tuple[tuple[str, str], ...]:
    """Labels naming what the image is; the build adds source, revision, version and created."""
    return (
        ("io.gpustack.runner.backend", t.backend),
        ("io.gpustack.runner.backend-version", t.original_backend_version),
        ("io.gpustack.runner.backend-variant", t.variant),
        ("io.gpustack.runner.service", t.service),
        ("io.gpustack.runner.service-version", t.service_version),
    )


def shows_version(dist: str, variable: str) -> str:
    """A line that fails unless pip shows `dist` at the version in the build argument `variable`."""
    # pip's output is read whole before grep: `pip show | grep -q` under pipefail fails when grep quits at
    # the match while pip still writes (pip exits 120 on the broken pipe)
    return f'grep -q "^Version: ${{{variable}}}" <<<"$(python3 -m pip show {dist})"'


def vendor_service(t: Target, runtime: Stage, *, torch: str, components: tuple[Component, ...] = (),
                   **env: str) -> StageBuilder:
    """Service stage for vendor images that ship torch and the service: check and record them."""
    module = {"voxbox": "vox_box", "mindie": "mindie_llm"}.get(t.service, t.service)
    b = service_builder(t, runtime)
    b.arg(f"{t.service.upper()}_TORCH_VERSION", torch, doc="torch the vendor image ships")
    b.run(f'python3 -m pip show {t.service} torch | grep -E "^(Name|Version):"\n'
          f'{shows_version(t.service, f"{t.service.upper()}_VERSION")}\n'
          f'{shows_version("torch", f"{t.service.upper()}_TORCH_VERSION")}',
          title=f"check the vendor's {t.service} and torch versions")
    b.component(python(t.service, t.service_version, imports=(module,)), python("torch", torch), *components)
    return b
