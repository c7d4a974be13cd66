"""AMD ROCm: runtime on rocm/dev-ubuntu complete; vLLM, flash-attn (CK), AITER with prebuilt kernels,
LMCache and Mooncake built from their sources against ROCm torch (AMD's wheels for 7.0, PyTorch's
index for 6.4); SGLang built from its ROCm project file with its kernel, router and fast Hadamard
transform, on the release's vLLM 0.14.1 image. Those are the seed-era rows (OFFICIAL.compiled); every
other vLLM and SGLang row layers the official image (runner.compose.official), on which a vLLM row
builds LMCache, Mooncake and vllm-omni as the compiled rows do (connectors)."""

from dataclasses import replace
from pathlib import Path

from runner.compose.builds import (Toolchain, flash_attn_source, kernel_build, lines, lmcache_source, mooncake_source,
                                   sglang_router, vllm_patches)
from runner.compose.components import LeftOut, python
from runner.compose.official import Official
from runner.compose.kit import (OTEL_BETAS, SGLANG_OVER_VLLM, RAY_EXTRAS, BuiltWheels, rust_toolchain, at_least, built_wheels, finish, install,
                                install_built, pick, pick_or, runtime_builder, service_builder, shared, torch_stage)
from runner.compose.requirements import Requirements, pkg
from runner.compose.shell import word
from runner.compose.sources import Git, github
from runner.compose.stages import Mount, Stage, StageBuilder, base_stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang")
HERE = Path(__file__).parent

TORCH = {">=0.13": "2.9.1", ">=0.11.2": "2.9.0", ">=0.10.2": "2.8.0"}
AITER = {"7": "0.1.8", "6": "0.1.7.post2"}
FLASH_ATTN = {">=0.12": "2.8.3", ">=0.11": "2.8.2"}
# flash-attn's CK build (2.8.2, 2.8.3) refuses any other GPU target in its setup.py
FLASH_ATTN_ARCHS = ("gfx90a", "gfx942", "gfx950")
# LMCache, Mooncake and vllm-omni per vLLM release, for the compiled rows and the layered ones alike (upstream
# builds all three on vLLM's ROCm image, which installs none of them): the versions upstream built
LMCACHE = {">=0.24": "0.5.0", ">=0.22": "0.4.6", ">=0.21": "0.4.5", ">=0.20": "0.4.4", ">=0.19": "0.4.3",
           ">=0.18": "0.4.2", ">=0.17": "0.3.15", ">=0.16": "0.3.14", ">=0.14": "0.3.12", ">=0.13": "0.3.11",
           ">=0.12": "0.3.10.post1", ">=0.11.2": "0.3.9.post2", ">=0.10.2": "0.3.6"}
MOONCAKE = {">=0.21": "0.3.11.post1", ">=0.20": "0.3.10.post2", ">=0.19": "0.3.10.post1", ">=0.18": "0.3.10",
            ">=0.15": "0.3.9", ">=0.14": "0.3.8.post1", ">=0.12": "0.3.7.post2"}
# a vllm-omni commit per vLLM minor; a minor upstream never built it for (0.29 on) goes without (LEFT_OUT)
OMNI = {"~=0.27.0": "d77a35a3", "~=0.25.0": "d3c47ef", "~=0.24.0": "a560ed1", "~=0.22.0": "f92d84f",
        "~=0.21.0": "5f9aee19", "~=0.20.0": "4a24a517", "~=0.19.0": "191b9a8d", "~=0.18.0": "f55ea280",
        "~=0.17.0": "155856ff", "~=0.16.0": "3d9fa8d5", "~=0.15.0": "630e84ef", "~=0.14.0": "2c294a7"}
SGLANG_BASE_VLLM = "0.14.1"
RADEON = "https://repo.radeon.com/rocm/manylinux/rocm-rel-{}/"  # a folder of wheels, not an index
PYTORCH_ROCM = "https://download.pytorch.org/whl/rocm{}"
# the ROCm port of fast-hadamard-transform lives on a branch of a fork that publishes no tags
FAST_HADAMARD = Git("fast-hadamard-transform", "https://github.com/jeffdaily/fast-hadamard-transform.git", "rocm",
                    branch_reason="the ROCm port is a branch of a fork that publishes no tags")
KERNELS = Toolchain("ROCM_ARCHS", "GPU targets the kernels are built for", 'PYTORCH_ROCM_ARCH="${ROCM_ARCHS}"')
NOSET = {"RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES": "1", "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES": "1",
         "TOKENIZERS_PARALLELISM": "false", "SAFETENSORS_FAST_GPU": "1"}

LEFT_OUT = (
    LeftOut("ROCm/triton (57c693b6)", "torch's own pytorch-triton-rocm (or AMD's triton wheel) provides triton; the "
            "released images build it only when triton is absent, which it never is", ("vllm", "sglang")),
    LeftOut("SGLang patch 001_wrong_vram", "its content is not known here; no patch is invented", ("sglang",)),
    LeftOut("rows after the seed era: vLLM and SGLang compiled here", "they layer the official image (OFFICIAL): its "
            "kernels, torch and ROCm are the image's, and the vLLM patches are not carried (not proven here against "
            "those versions' sources)", ("vllm", "sglang")),
    LeftOut("LMCache on a vLLM row before 0.10.2", "no LMCache release is known to have been built for them", ("vllm",)),
    LeftOut("vllm-omni on a vLLM row of 0.29 or later", "upstream's layered ROCm rows stop at vLLM 0.27.1, so no "
            "vllm-omni commit is known to build against these releases (OMNI)", ("vllm",)),
)


def sglang_image(t: Target) -> str:
    """SGLang's official ROCm image: per ROCm minor release, for MI35x (gfx950) or MI30x (gfx942)."""
    major, minor = t.original_backend_version.split(".")[:2]
    return f"lmsysorg/sglang:v{t.service_version}-rocm{major}{minor}0-{'mi35x' if 'gfx950' in t.archs else 'mi30x'}"


OFFICIAL = Official(
    HERE, compiled={"vllm": ">=0.10.2,<=0.14.1", "sglang": ">=0.5.5,<=0.5.8"},
    images={"vllm": lambda t: f"vllm/vllm-openai-rocm:v{t.service_version}", "sglang": sglang_image}, ray="2.54.0",
    env={"vllm": {**NOSET, "SAFETENSORS_FAST_GPU": "1", "VLLM_ROCM_USE_AITER": "1"},
         # as the compiled SGLang rows have it from the vLLM image they start from
         "sglang": {**NOSET, "VLLM_ROCM_USE_AITER": "1", "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1", "SGLANG_MOE_PADDING": "1",
                    "SGLANG_SET_CPU_AFFINITY": "1", "SGLANG_USE_AITER": "1"}},
    builds={"vllm": lambda t, runtime: connectors(t, runtime)})


def rocm_major(t: Target) -> str:
    return t.original_backend_version.split(".")[0]


def torch_source(t: Target, version: str) -> dict:
    """Where torch comes from: AMD's wheels for ROCm 7 (vLLM 0.11.2 uses PyTorch's ROCm 6.4 build, as the
    seed's table notes), PyTorch's ROCm index for 6.x."""
    if rocm_major(t) == "7" and at_least(version, "0.12"):
        return {"find_links": (RADEON.format(t.original_backend_version),)}
    major_minor = "6.4" if rocm_major(t) == "7" else ".".join(t.original_backend_version.split(".")[:2])
    return {"index": PYTORCH_ROCM.format(major_minor)}


def base(t: Target, platform: str) -> Stage:
    return OFFICIAL.base(t, platform) if OFFICIAL.layers(t) else base_stage(t.base_image, platform)


def runtime(t: Target, base: Stage) -> Stage:
    b = runtime_builder(t, base, home="/opt/rocm")
    install(b, t, Requirements((pkg("amdsmi", built="/opt/rocm/share/amd_smi"),), no_build_isolation=True,
                               title="amd_smi Python bindings from ROCm"))
    return b.build()


def service(t: Target, runtime: Stage) -> Stage:
    if OFFICIAL.layers(t):
        return OFFICIAL.service(t, runtime)
    return vllm(t, runtime) if t.service == "vllm" else sglang(t, runtime)


def kernel(t: Target, base: Stage, name: str, version: str, script: str, gb_per_job: int = 2,
           args: dict[str, str] | None = None) -> Stage:
    """A kernel build stage (builds.kernel_build) for the target's GPUs."""
    return kernel_build(t, base, name, version, script, toolchain=KERNELS, archs=";".join(t.archs), gb_per_job=gb_per_job,
                        args=args)


@shared
def build_base(t: Target, runtime: Stage, torch: str, version: str) -> Stage:
    with_torch = torch_stage(t, runtime, torch, **torch_source(t, version))
    b = StageBuilder("vllm-build", f"rocm-build-torch{torch}", with_torch)
    deps = Requirements(tuple(pkg(p) for p in ("setuptools>=77.0.3,<80", "requests", "pyyaml", "einops", "pandas")),
                        title="kernel build dependencies")
    return install(b, t, deps).build()


@shared
def vllm(t: Target, runtime: Stage) -> Stage:
    p, v = runtime.platform, t.service_version
    torch = pick(v, TORCH, "torch")
    base = build_base(t, runtime, torch, v)
    wheel = kernel(t, base, "vllm", v, f"""
        {github("vllm-project/vllm", "v${VLLM_VERSION}").clone("/tmp/vllm")}
        cd /tmp/vllm && sed -i 's/"torch ==[^"]*"/"torch"/' pyproject.toml
        sed -i 's/^\\(torch\\|torchvision\\|torchaudio\\|triton\\)==.*/\\1/' requirements/rocm-build.txt
        uv pip install -r requirements/rocm-build.txt "protobuf>=6.33.2" "grpcio-tools>=1.76.0"
        VLLM_TARGET_DEVICE=rocm COMPILE_CUSTOM_KERNELS=1 python3 -m build --wheel --no-isolation --outdir /workspace/vllm""", gb_per_job=4,
        args={"VLLM_VERSION": v})
    aiter_version = AITER[rocm_major(t)]
    aiter_archs = "gfx942;gfx950" if rocm_major(t) == "7" else "gfx942"
    aiter = kernel(t, base, "aiter", aiter_version, f"""
        {github("ROCm/aiter", f"v{aiter_version}").clone("/tmp/aiter")}
        cd /tmp/aiter && GPU_ARCHS={word(aiter_archs)} BUILD_TARGET=rocm PREBUILD_KERNELS=1 python3 setup.py bdist_wheel --dist-dir /workspace/aiter""")
    built = [built_wheels(wheel, "vllm", ("vllm", "vllm-${VLLM_VERSION}[+-]*.whl"), resolve_as=f"vllm=={v}",
                          without=("torch", "torchvision", "torchaudio", "xformers", "flashinfer-python"),
                          components=[python("vllm", v, imports=("vllm",))]),
             built_wheels(aiter, "aiter", ("amd-aiter", "*.whl"),
                          components=[python("AITER", aiter_version, dist="amd-aiter", imports=("aiter",))])]
    if (fa := pick_or(v, FLASH_ATTN)):
        fa_archs = ";".join(a for a in t.archs if a in FLASH_ATTN_ARCHS)
        source = flash_attn_source(fa, f"GPU_ARCHS={word(fa_archs)} BUILD_TARGET=rocm", indent=12)
        built.append(built_wheels(kernel(t, base, "flash-attn", fa, source),
            "flash-attn", ("flash-attn", "*.whl"), components=[python("flash-attn", fa)]))
    built += connectors(t, base)
    omni = pick_or(v, OMNI)
    b = service_builder(t, torch_stage(t, runtime, torch, **torch_source(t, v)))  # not the build base: no compilers
    install_built(b, t, built, no_build_isolation=True, prereleases=OTEL_BETAS,
                  title=f"vLLM {v}, AITER and the kernels and connectors built for this torch")
    install(b, t, RAY_EXTRAS)
    # the released images pin aiofiles 25.1.0; vllm-omni's gradio needs aiofiles<25, so with omni its pin holds
    extras = ("accelerate", "hf_transfer", "modelscope", "aiofile==3.9.0", *(() if omni else ("aiofiles==25.1.0",)), "awscrt==0.28.2",
              "cufile-python==0.2.0", "nvtx==0.2.13", "sortedcontainers==2.4.0", "librosa", "soundfile",
              "mistral_common[audio]", "petit-kernel")
    install(b, t, Requirements(tuple(pkg(e) for e in extras), prereleases=OTEL_BETAS, title="audio, model-hub and kernel extras"))
    b.component(python("ray", ""), python("petit-kernel", ""))
    vllm_patches(b, t, HERE, omni=bool(omni))
    return finish(b, t, VLLM_TORCH_VERSION=torch, **NOSET, HIP_FORCE_DEV_KERNARG="1", HSA_NO_SCRATCH_RECLAIM="1",
                  VLLM_ROCM_USE_AITER="1", VLLM_FP8_PADDING="1", VLLM_FP8_ACT_PADDING="1",
                  VLLM_FP8_WEIGHT_PADDING="1", VLLM_FP8_REDUCE_CONV="1")


def connectors(t: Target, base: Stage) -> list[BuiltWheels]:
    """LMCache (with hipcc), Mooncake (HIP transport) and vllm-omni built for the row's vLLM on `base`, which
    has the torch they build against: the compiled rows' build base, or a layered row's official image."""
    v, built = t.service_version, []
    if (lm := pick_or(v, LMCACHE)):
        source = lmcache_source(lm, "TORCH_DONT_CHECK_COMPILER_ABI=1 CXX=hipcc BUILD_WITH_HIP=1")
        built.append(built_wheels(kernel(t, base, "lmcache", lm, source),
            "lmcache", ("lmcache", "*.whl"), resolve_as=f"lmcache=={lm}", without=("torch",),
            components=[python("lmcache", lm, imports=("lmcache.integration.vllm.vllm_v1_adapter",))]))
    if (mc := pick_or(v, MOONCAKE)):
        source = mooncake_source(mc, "-DUSE_HIP=ON", indent=12) + lines("mv mooncake-wheel/dist/*.whl /workspace/mooncake/", indent=12)
        built.append(built_wheels(kernel(t, base, "mooncake", mc, source), "mooncake", ("mooncake-transfer-engine", "*.whl"),
            resolve_as=f"mooncake-transfer-engine=={mc}", components=[python("mooncake", mc, dist="mooncake-transfer-engine")]))
    if (omni := pick_or(v, OMNI)):
        # the commit's own requirements are read from the index's release at or below the row's vLLM minor
        built.append(built_wheels(kernel(t, base, "vllm-omni", omni, f"""
            {github("vllm-project/vllm-omni", omni).clone("/tmp/omni")}
            cd /tmp/omni && sed -i '/"fa3-fwd/d' pyproject.toml  # its FlashAttention-3 wheel is for CUDA
            python3 -m build --wheel --no-isolation --outdir /workspace/vllm-omni"""), "vllm-omni", ("vllm-omni", "*.whl"),
            resolve_as=f"vllm-omni<={v.rsplit('.', 1)[0]}.0", without=("onnxruntime", "fa3-fwd"),
            also=(pkg("onnxruntime-rocm"), pkg("sox")),
            components=[python("vllm-omni", omni, dist="", imports=("vllm_omni",)), python("onnxruntime-rocm", "")]))
    return built


def runtime_archs(t: Target) -> tuple[str, ...]:
    """The vLLM 0.14.1 image SGLang starts from is built for vLLM 0.13+'s arch set on this release."""
    return ("gfx908", "gfx90a", "gfx942") if rocm_major(t) == "6" else (
        "gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101", "gfx1200", "gfx1201", "gfx1150", "gfx1151")


def sglang(t: Target, runtime: Stage) -> Stage:
    p, v = runtime.platform, t.service_version
    parent = vllm(replace(t, service="vllm", service_version=SGLANG_BASE_VLLM, archs=runtime_archs(t)), runtime)
    base = build_base(t, runtime, pick(SGLANG_BASE_VLLM, TORCH), SGLANG_BASE_VLLM)
    built = kernel(t, base, "sglang", v, f"""
        {github("sgl-project/sglang", "v${SGLANG_VERSION}").clone("/tmp/sglang")}
        find /tmp/sglang/python/sglang/srt/layers/quantization/configs /tmp/sglang/python/sglang/srt/layers/moe/fused_moe_triton/configs \\
            -type f -name '*MI300X*' -exec sh -c 'cp "$1" "$(echo "$1" | sed s/MI300X/MI300X_VF/)"' _ {{}} \\;
        cd /tmp/sglang/python
        cp ../README.md ../LICENSE . 2>/dev/null || true
        if [[ -f pyproject_other.toml ]]; then mv pyproject_other.toml pyproject.toml; fi  # the ROCm and NPU extras live there
        sed -i 's/"torch==[^"]*"/"torch"/; s/"torchaudio==[^"]*"/"torchaudio"/' pyproject.toml
        uv pip install "grpcio-tools==1.75.1" && python3 -m build --wheel --no-isolation --outdir /workspace/sglang
        cd /tmp/sglang/sgl-kernel && if [[ -f pyproject_rocm.toml ]]; then mv pyproject_rocm.toml pyproject.toml; fi
        AMDGPU_TARGET={word(';'.join(t.archs))} python3 setup_rocm.py bdist_wheel --dist-dir /workspace/sglang
        {rust_toolchain()}{sglang_router()}
        {FAST_HADAMARD.clone("/tmp/fht", submodules=False)}
        cd /tmp/fht && FAST_HADAMARD_TRANSFORM_SKIP_CUDA_BUILD=TRUE python3 -m build --wheel --no-isolation --outdir /workspace/sglang
        rm -rf /tmp/sglang /tmp/fht /root/.cargo /root/.rustup""", args={"SGLANG_VERSION": v})
    extras = ("srt_hip", "diffusion_hip") if p == "linux/amd64" else ("srt_hip",)
    b = service_builder(t, parent)
    reqs = Requirements((pkg("sglang", extras=extras, built=f'"$(ls /mnt/sglang/sglang-${{SGLANG_VERSION}}-*.whl)[{",".join(extras)}]"',
                         resolve_as=f"sglang=={v}",  # the HIP extras are in the source tree's project file only
                         without=("torch", "torchaudio")),  # the build loosens its torch pins: the image's torch
                         pkg("sgl-kernel", built="/mnt/sglang/sgl_kernel*.whl"),
                         pkg("sglang-router", built="/mnt/sglang/sglang_router*.whl"),
                         pkg("fast-hadamard-transform", built="/mnt/sglang/fast_hadamard_transform*.whl")),
                        no_build_isolation=True, prereleases=OTEL_BETAS, upgrade=SGLANG_OVER_VLLM,
                        supersedes=tuple(("vllm", n) for n in SGLANG_OVER_VLLM),
                        title=f"SGLang {v} (ROCm project file), its kernel, the router and fast-hadamard-transform")
    install(b, t, reqs, after="uv pip uninstall runai-model-streamer || true", mounts=[Mount(built, "/workspace/sglang", "/mnt/sglang")])
    b.component(python("sglang", v, imports=("sglang",)), python("sgl-kernel", ""),
                python("sglang-router", "", imports=("sglang_router",)), python("fast-hadamard-transform", ""))
    return finish(b, t, SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN="1", SGLANG_INT4_WEIGHT="0",
                  SGLANG_MOE_PADDING="1", SGLANG_SET_CPU_AFFINITY="1", SGLANG_ROCM_DISABLE_LINEARQUANT="0",
                  SGLANG_ROCM_FUSED_DECODE_MLA="1", SGLANG_USE_AITER="1", SGLANG_USE_ROCM700A="1")
