"""Building blocks the recipes in pack/<backend>/recipe.py share: cache mounts, the common runtime,
service stage scaffolding and version-range pins. Recipes stay short and read top to bottom."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache, wraps
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from runner.compose.stages import Cache, Stage, StageBuilder
from runner.model.targets import Target

CMAKE_VERSION = "3.31.7"
UV_SPEC = "uv<=0.9.11"
PIP_PINS = ("build", "cmake<4", "ninja<1.11", "setuptools>=77.0.3,<80", "setuptools-scm", "packaging<25",
            "wheel==0.45.1", "pybind11<3", "Cython", "psutil", "pipx<=1.8.0", UV_SPEC)
TIMEZONE = "Asia/Shanghai"

_CACHE_PATHS = {
    "apt": ("/var/cache/apt", "/var/lib/apt/lists"),
    "uv": ("/root/.cache/uv",),
    "pip": ("/root/.cache/pip",),
    "ccache": ("/root/.cache/ccache",),
}


def caches(t: Target, platform: str, *tools: str) -> tuple[Cache, ...]:
    """Cache mounts for package managers, one volume per backend, platform and path, so warm builds
    reuse downloads and nothing of the cache lands in a layer."""
    return _caches(t.backend, platform, tools)


@lru_cache(maxsize=1024)
def _caches(backend: str, platform: str, tools: tuple[str, ...]) -> tuple[Cache, ...]:
    plat = platform.replace("/", "-")
    out = []
    for tool in tools:
        for i, path in enumerate(_CACHE_PATHS[tool]):
            suffix = f"-{i}" if i else ""
            out.append(Cache(path, f"runner-{backend}-{plat}-{tool}{suffix}"))
    return tuple(out)


def pick(version: str, pins: Mapping[str, str], what: str = "pin") -> str:
    """The value of the first version range that contains `version`, e.g.
    pick("0.13.0", {">=0.14": "2.9.1", ">=0.11.2": "2.9.0"}) == "2.9.0". New service versions fall
    into an existing range, so adding one is a matrix line, not a recipe edit."""
    for spec, value in pins.items():
        if _contains(spec, version):
            return value
    raise LookupError(f"no {what} for version {version} (ranges: {', '.join(pins)})")


@lru_cache(maxsize=8192)
def _contains(spec: str, version: str) -> bool:
    return _specifier(spec).contains(_version(version))


@lru_cache(maxsize=256)
def _specifier(spec: str) -> SpecifierSet:
    return SpecifierSet(spec, prereleases=True)


@lru_cache(maxsize=8192)
def _version(version: str) -> Version:
    return Version(version)


def shared(compose_stage):
    """Decorator for recipe functions that other targets reuse (SGLang builds on the release's vLLM
    image): equal (target, stage) inputs give the very same Stage, composed once."""
    memo: dict[tuple, Stage] = {}

    @wraps(compose_stage)
    def wrapper(t: Target, parent: Stage) -> Stage:
        key = (t, parent.key)
        if (found := memo.get(key)) is None:
            found = memo[key] = compose_stage(t, parent)
        return found

    return wrapper


# uv and pip get their caches back inside the step that mounts them; the image keeps the
# UV_NO_CACHE/PIP_NO_CACHE_DIR defaults the consumers rely on.
WITH_CACHES = "unset UV_NO_CACHE PIP_NO_CACHE_DIR; export UV_CACHE_DIR=/root/.cache/uv UV_LINK_MODE=copy PIP_CACHE_DIR=/root/.cache/pip"
APT_KEEP = ("rm -f /etc/apt/apt.conf.d/docker-clean; "
            "echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache")

RUNTIME_APT = (
    "build-essential curl wget aria2 git git-lfs locales tzdata ca-certificates gnupg "
    "iproute2 iputils-ping net-tools rdma-core ibverbs-utils infiniband-diags "
    "procps htop tini vim jq bc tree make ninja-build pkg-config ccache "
    "libssl-dev libopenblas-dev ffmpeg libnuma-dev libjemalloc-dev libgrpc-dev protobuf-compiler "
    "libibverbs-dev librdmacm-dev"
)


def runtime_builder(t: Target, base: Stage, *, extra_apt: str = "", home: str = "") -> StageBuilder:
    """The runtime every service of a backend release shares: locale, timezone, OS packages with tini,
    python at the matrix's version with pip and uv, CMake, and the build tool pins."""
    p = base.platform
    b = StageBuilder("runtime", "runtime", base)
    b.arg("PYTHON_VERSION", t.python, doc="python of the image")
    b.arg(f"{t.backend.upper()}_VERSION", t.original_backend_version, doc="full backend version")
    b.env(DEBIAN_FRONTEND="noninteractive", LANG="en_US.UTF-8", LANGUAGE="en_US:en", LC_ALL="en_US.UTF-8",
          PYTHON_VERSION=t.python, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
          PIP_ROOT_USER_ACTION="ignore", PIPX_HOME="/root/.local/share/pipx",
          PIPX_LOCAL_VENVS="/root/.local/share/pipx/venvs", UV_NO_CACHE="1", UV_HTTP_TIMEOUT="500",
          UV_INDEX_STRATEGY="unsafe-best-match")
    b.run(f"""
        {APT_KEEP}
        apt-get update
        apt-get install -y --no-install-recommends {RUNTIME_APT} {extra_apt}
        sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && locale-gen
        ln -sf /usr/share/zoneinfo/{TIMEZONE} /etc/localtime && echo {TIMEZONE} > /etc/timezone
        """, caches=caches(t, p, "apt"), title="OS packages, tini, locale and timezone")
    b.run(f"""
        {APT_KEEP}
        if [[ "$(python3 -c 'import sys; print(f"{{sys.version_info[0]}}.{{sys.version_info[1]}}")' 2>/dev/null)" != "${{PYTHON_VERSION}}" ]]; then
            apt-get update && apt-get install -y --no-install-recommends software-properties-common
            add-apt-repository -y ppa:deadsnakes/ppa && apt-get update
            apt-get install -y --no-install-recommends python${{PYTHON_VERSION}} python${{PYTHON_VERSION}}-dev python${{PYTHON_VERSION}}-venv
            update-alternatives --install /usr/bin/python3 python3 /usr/bin/python${{PYTHON_VERSION}} 10
            update-alternatives --install /usr/bin/python python /usr/bin/python${{PYTHON_VERSION}} 10
            curl -fsSL https://bootstrap.pypa.io/get-pip.py | python3 -
        else
            ldconfig "$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
        fi
        """, caches=caches(t, p, "apt"), title="python ${PYTHON_VERSION} with pip")
    b.run(f"""
        {WITH_CACHES}
        curl -fsSL https://github.com/Kitware/CMake/releases/download/v{CMAKE_VERSION}/cmake-{CMAKE_VERSION}-linux-$(uname -m).tar.gz \\
            | tar -xz --strip-components=1 -C /usr/local
        python3 -m pip install {' '.join(repr(x) for x in PIP_PINS)}
        """, caches=caches(t, p, "pip"), title=f"CMake {CMAKE_VERSION}, uv and the build tool pins")
    if home:
        b.env(**{f"{t.backend.upper()}_HOME": home, f"{t.backend.upper()}_VERSION": t.original_backend_version})
    return b


def torch_stage(t: Target, runtime: Stage, torch: str, *packages: str, index: str = "", extra_index: str = "") -> Stage:
    """torch (with companions such as torchvision or torch-npu) on the runtime: a stage of its own so
    that every service version needing the same torch shares it."""
    memo_key = (runtime.key, t.backend, torch, packages, index, extra_index)
    if (found := _TORCH_STAGES.get(memo_key)) is not None:
        return found
    where = (f" --index-url {index}" if index else "") + (f" --extra-index-url {extra_index}" if extra_index else "")
    _TORCH_STAGES[memo_key] = stage = (
        StageBuilder("torch", f"torch{torch}", runtime)
        .arg("TORCH_VERSION", torch, doc="torch release")
        .run(f"{WITH_CACHES}\nuv pip install --system{where} \"torch==${{TORCH_VERSION}}\" {' '.join(repr(p) for p in packages)}".rstrip(),
             caches=caches(t, runtime.platform, "uv"), title=f"torch {torch}")
        .build()
    )
    return stage


_TORCH_STAGES: dict[tuple, Stage] = {}  # a stage is immutable, so equal inputs can share one


def service_builder(t: Target, parent: Stage, *, name: str | None = None, kind: str = "service") -> StageBuilder:
    """A service stage (or a build stage of one, with another kind) with uv set to the system python."""
    b = StageBuilder(kind, name or t.service, parent, **({"tag": t.tag} if kind == "service" else {}))
    b.arg(f"{t.service.upper()}_VERSION", t.service_version, doc=f"{t.service} version")
    b.arg(f"{t.backend.upper()}_ARCHS", " ".join(t.archs), required=bool(t.archs), doc="compute architectures")
    b.env(UV_SYSTEM_PYTHON="1", UV_PRERELEASE="allow")
    return b


def finish(b: StageBuilder, t: Target, **env: str) -> Stage:
    """Close a service stage the way every image ends: its environment, WORKDIR / and tini."""
    b.env(UV_SKIP_WHEEL_FILENAME_CHECK="1", **{f"{t.service.upper()}_VERSION": t.service_version,
                                               f"{t.backend.upper()}_ARCHS": " ".join(t.archs)}, **env)
    b.workdir("/")
    b.entrypoint("tini", "--")
    return b.labels(target_labels(t)).build()


def add_patches(b: StageBuilder, t: Target, recipe_dir: Path, source_dir: str) -> StageBuilder:
    """Apply pack/<backend>/patches/<service>/<version>/*.patch (and patches/<service>/all/*.patch) to
    the service source in source_dir, in name order. A patch that does not apply fails the build."""
    found = _patches(recipe_dir, t.service, t.service_version)
    for name, text in found:
        b.file(f"/workspace/patches/{name}", text)
    if found:
        names = " ".join(f"/workspace/patches/{name}" for name, _ in found)
        b.run(f"cd {source_dir}\nfor p in {names}; do patch -p1 --forward < \"$p\"; done",
              title=f"apply {len(found)} patch(es) to {t.service} {t.service_version}")
    return b


@lru_cache(maxsize=1024)
def _patches(recipe_dir: Path, service: str, version: str) -> tuple[tuple[str, str], ...]:
    found: list[Path] = []
    for folder in (recipe_dir / "patches" / service / "all", recipe_dir / "patches" / service / version):
        found += sorted(folder.glob("*.patch")) if folder.is_dir() else []
    return tuple((p.name, p.read_text()) for p in found)


def target_labels(t: Target) -> tuple[tuple[str, str], ...]:
    """Labels naming what the image is; the build adds source, revision, version and created."""
    return (
        ("io.gpustack.runner.backend", t.backend),
        ("io.gpustack.runner.backend-version", t.original_backend_version),
        ("io.gpustack.runner.backend-variant", t.variant),
        ("io.gpustack.runner.service", t.service),
        ("io.gpustack.runner.service-version", t.service_version),
    )


def prebuilt_runtime(t: Target, base: Stage, *, home: str, vendor_home: str) -> Stage:
    """Runtime for vendor images that already ship torch and the service: link the backend home,
    make sure tini is there, and set the shared environment."""
    b = StageBuilder("runtime", "runtime", base)
    b.arg("PYTHON_VERSION", t.python, doc="python of the image")
    b.arg(f"{t.backend.upper()}_VERSION", t.original_backend_version, doc="full backend version")
    b.env(LANG="en_US.UTF-8", LANGUAGE="en_US:en", LC_ALL="en_US.UTF-8", PYTHON_VERSION=t.python,
          PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore",
          UV_NO_CACHE="1", UV_HTTP_TIMEOUT="500", UV_INDEX_STRATEGY="unsafe-best-match",
          **{f"{t.backend.upper()}_HOME": home, f"{t.backend.upper()}_VERSION": t.original_backend_version})
    b.run(f"""
        {APT_KEEP}
        [[ -e {home} ]] || ln -s {vendor_home} {home}
        if ! command -v tini >/dev/null; then apt-get update && apt-get install -y --no-install-recommends tini; fi
        ln -sf /usr/share/zoneinfo/{TIMEZONE} /etc/localtime && echo {TIMEZONE} > /etc/timezone
        """, caches=caches(t, base.platform, "apt"), title=f"link {home}, tini, timezone")
    b.run(f"{WITH_CACHES}\npython3 -m pip install '{UV_SPEC}'", caches=caches(t, base.platform, "pip"), title="uv")
    return b.build()


def prebuilt_service(t: Target, runtime: Stage, *, torch: str, **env: str) -> Stage:
    """Service stage for vendor images: record versions and environment; the service is already in."""
    b = service_builder(t, runtime)
    b.arg(f"{t.service.upper()}_TORCH_VERSION", torch, doc="torch the vendor image ships")
    b.run(f"python3 -c 'import {_import_name(t.service)}' && python3 -c 'import torch; print(torch.__version__)'",
          title=f"check the vendor's {t.service} and torch import")
    return finish(b, t, **{f"{t.service.upper()}_TORCH_VERSION": torch}, **env)


def _import_name(service: str) -> str:
    return {"voxbox": "vox_box", "mindie": "mindie_llm"}.get(service, service)
