"""Source builds several recipes repeat: a kernel build stage, the build scripts of flash-attn,
LMCache, Mooncake and the SGLang router, and the patches of a vLLM service stage.

A script here is a run of shell lines, each starting on a new line at `indent` spaces: the same text
the recipes' own f-strings give at that place, so a recipe taking one renders the Dockerfile it did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.compose.kit import WITH_CACHES, add_patches, caches, max_jobs, site_packages
from runner.compose.sources import github
from runner.compose.stages import Stage, StageBuilder
from runner.model.targets import Target


@dataclass(frozen=True)
class Toolchain:
    """How a backend's kernel builds get their GPU targets: the build argument that holds them and the
    environment its compilers read them from (e.g. TORCH_CUDA_ARCH_LIST="${CUDA_ARCHS}")."""

    arg: str
    doc: str
    env: str


def kernel_build(t: Target, base: Stage, name: str, version: str, script: str, *, toolchain: Toolchain, archs: str,
                 gb_per_job: int, args: dict[str, str] | None = None) -> Stage:
    """A build stage on `base` leaving its wheels (or packages) in /workspace/<name>, with the uv and
    ccache caches and as many jobs as memory allows; `args` are build arguments its script reads."""
    b = StageBuilder("vllm-build", f"{name}-build", base)
    b.arg(toolchain.arg, archs, doc=toolchain.doc)
    for arg, value in (args or {}).items():
        b.arg(arg, value, doc=f"{name} release")
    b.run(f"""
        {WITH_CACHES}
        {max_jobs(gb_per_job)}
        export {toolchain.env} CCACHE_DIR=/root/.cache/ccache
        mkdir -p /workspace/{name}
        {script}
        """, caches=caches(t, base.platform, "uv", "ccache"), title=f"build {name} {version}")
    return b.build()


def lines(*commands: str, indent: int = 8) -> str:
    """Shell commands, each on a new line at `indent` spaces."""
    return "".join(f"\n{' ' * indent}{c}" for c in commands)


def wheel(folder: str, env: str = "") -> str:
    """Build the project in the current folder as a wheel into /workspace/<folder>, on the stage's torch."""
    return f"{env + ' ' if env else ''}python3 -m build --wheel --no-isolation --outdir /workspace/{folder}"


def flash_attn_source(version: str, env: str, indent: int = 8) -> str:
    """flash-attn from its tag; `env` selects the backend (BUILD_TARGET=cuda, GPU_ARCHS=... BUILD_TARGET=rocm)."""
    return lines(github("Dao-AILab/flash-attention", f"v{version}").clone("/tmp/fa"), f"cd /tmp/fa && {wheel('flash-attn', env)}",
                 indent=indent)


def lmcache_source(version: str, env: str = "", indent: int = 8) -> str:
    """LMCache from its tag, its torch pin dropped (torch is the build stage's)."""
    return lines(github("LMCache/LMCache", f"v{version}").clone("/tmp/lmcache"),
                 """cd /tmp/lmcache && sed -i 's/"torch==[^"]*"/"torch"/' pyproject.toml""", wheel("lmcache", env), indent=indent)


def lmcache_ascend_source(ref: str, indent: int = 8) -> str:
    """LMCache-Ascend (LMCache's Ascend kernels and connector) from its tag or commit, its wheel built into
    /workspace/lmcache-ascend against the image's torch-npu and CANN (after CANN's set_env.sh)."""
    return lines(github("LMCache/LMCache-Ascend", ref).clone("/tmp/lmcache-ascend"),
                 f"cd /tmp/lmcache-ascend && {wheel('lmcache-ascend')}", "rm -rf /tmp/lmcache-ascend", indent=indent)


# LMCache-Ascend's c_ops library names a RUNPATH that does not resolve once installed: the loader is told
# the package's folder instead (after the install)
LMCACHE_ASCEND_LIBRARIES = ('echo "$(python3 -m pip show lmcache-ascend | awk \'/^Location:/{print $2}\')/lmcache_ascend" '
                            "> /etc/ld.so.conf.d/lmcache_ascend.conf && ldconfig")


def mooncake_source(version: str, transport: str, indent: int = 8) -> str:
    """Mooncake's transfer engine from its tag, with `transport` (a CMake option such as -DUSE_HIP=ON),
    built and installed; its wheel is then in /tmp/mooncake/mooncake-wheel/dist."""
    return lines(github("kvcache-ai/Mooncake", f"v{version}").clone("/tmp/mooncake"),
                 "cd /tmp/mooncake && bash dependencies.sh -y",
                 f"cmake -S . -B build -DBUILD_UNIT_TESTS=OFF {transport} -DUSE_HTTP=ON -DUSE_ETCD=ON -DSTORE_USE_ETCD=ON "
                 "-DCMAKE_BUILD_TYPE=Release",
                 'cmake --build build --target install -j"$MAX_JOBS" && ./scripts/build_wheel.sh', indent=indent)


def sglang_router(indent: int = 8) -> str:
    """The SGLang router's wheel into /workspace/sglang, from the SGLang source in /tmp/sglang (after
    kit.rust_toolchain())."""
    return lines("uv pip install setuptools-rust maturin",
                 "cd /tmp/sglang/sgl-model-gateway/bindings/python && ulimit -n 65536",
                 "maturin build --release --features vendored-openssl --out /workspace/sglang", indent=indent)


def vllm_patches(b: StageBuilder, t: Target, recipe_dir: Path, omni: bool) -> StageBuilder:
    """The patches of the installed vLLM, and of vllm-omni when the image has it (kit.add_patches)."""
    add_patches(b, t, recipe_dir, site_packages("vllm"))
    if omni:
        add_patches(b, t, recipe_dir, site_packages("vllm-omni"), service="vllm-omni")
    return b
