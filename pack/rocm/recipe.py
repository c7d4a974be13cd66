"""AMD ROCm: runtime on rocm/dev-ubuntu complete; vLLM built from its tag with AITER against ROCm torch
wheels; SGLang built on the release's vLLM 0.14.1 image with its kernel for the release's arch."""

from dataclasses import replace
from pathlib import Path

from runner.compose.kit import WITH_CACHES, add_patches, caches, finish, pick, runtime_builder, service_builder, shared, torch_stage
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang")
HERE = Path(__file__).parent

TORCH = {">=0.13": "2.9.1", ">=0.11.2": "2.9.0", ">=0.10.2": "2.8.0"}
AITER = {"7": "0.1.8", "6": "0.1.7.post2"}
SGLANG_BASE_VLLM = "0.14.1"
NOSET = {"RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES": "1", "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES": "1",
         "TOKENIZERS_PARALLELISM": "false", "SAFETENSORS_FAST_GPU": "1"}


def torch_index(t: Target) -> str:
    """ROCm 7 torch comes from AMD's wheel repository of that release; ROCm 6.4 from PyTorch's index."""
    if t.original_backend_version.startswith("7."):
        return f"https://repo.radeon.com/rocm/manylinux/rocm-rel-{t.original_backend_version}/"
    return "https://download.pytorch.org/whl/rocm6.4"


def runtime(t: Target, base: Stage) -> Stage:
    return (
        runtime_builder(t, base, extra_apt="libopenmpi-dev openmpi-bin", home="/opt/rocm")
        .run(f"{WITH_CACHES}\npython3 -m pip install /opt/rocm/share/amd_smi", caches=caches(t, base.platform, "pip"),
             title="amd_smi python bindings")
        .build()
    )


def service(t: Target, runtime: Stage) -> Stage:
    return vllm(t, runtime) if t.service == "vllm" else sglang(t, runtime)


@shared
def vllm(t: Target, runtime: Stage) -> Stage:
    p, torch = runtime.platform, pick(t.service_version, TORCH, "torch")
    archs = ";".join(t.archs)
    with_torch = torch_stage(t, runtime, torch, "torchvision", extra_index=torch_index(t))
    build = (
        service_builder(t, with_torch, name="vllm-build", kind="vllm-build")
        .arg("VLLM_TORCH_VERSION", torch, doc="torch the vLLM release needs")
        .arg("VLLM_AITER_VERSION", AITER[t.original_backend_version.split(".")[0]], doc="AITER release")
        .run('git clone --depth 1 --branch "v${VLLM_VERSION}" https://github.com/vllm-project/vllm.git /workspace/vllm',
             title="fetch vLLM at its release tag")
    )
    build = add_patches(build, t, HERE, "/workspace/vllm").run(f"""
        {WITH_CACHES}
        export PYTORCH_ROCM_ARCH="{archs}" VLLM_TARGET_DEVICE=rocm CCACHE_DIR=/root/.cache/ccache
        python3 -c 'import triton' 2>/dev/null || uv pip install "git+https://github.com/ROCm/triton@57c693b6#subdirectory=python"
        git clone --depth 1 --branch "v${{VLLM_AITER_VERSION}}" --recursive https://github.com/ROCm/aiter.git /workspace/aiter
        (cd /workspace/aiter && GPU_ARCHS="gfx942{';gfx950' if t.original_backend_version.startswith('7.') else ''}" python3 -m build --wheel --no-isolation --outdir /workspace/wheels)
        cd /workspace/vllm && python3 use_existing_torch.py && uv pip install -r requirements/rocm-build.txt
        python3 -m build --wheel --no-isolation --outdir /workspace/wheels
        """, caches=caches(t, p, "uv", "pip", "ccache"), title="build AITER and the vLLM wheel").build()
    b = (
        service_builder(t, with_torch)
        .arg("VLLM_TORCH_VERSION", torch, doc="torch the vLLM release needs")
        .copy_from(build, "/workspace/wheels", "/workspace/wheels")
        .run(f"""
            {WITH_CACHES}
            uv pip install /workspace/wheels/*.whl \\
                "cufile-python==0.2.0" "awscrt==0.28.2" petit-kernel onnxruntime-rocm
            ray_version=$(python3 -c 'import ray; print(ray.__version__)')
            uv pip install "ray[client]==${{ray_version}}" "ray[default]==${{ray_version}}"
            rm -rf /workspace/wheels
            """, caches=caches(t, p, "uv"), title="install vLLM, AITER, torch and Ray")
    )
    return finish(b, t, VLLM_TORCH_VERSION=torch, **NOSET, HIP_FORCE_DEV_KERNARG="1", HSA_NO_SCRATCH_RECLAIM="1",
                  VLLM_ROCM_USE_AITER="1", VLLM_FP8_PADDING="1", VLLM_FP8_ACT_PADDING="1",
                  VLLM_FP8_WEIGHT_PADDING="1", VLLM_FP8_REDUCE_CONV="1")


def sglang(t: Target, runtime: Stage) -> Stage:
    p = runtime.platform
    parent = vllm(replace(t, service="vllm", service_version=SGLANG_BASE_VLLM, archs=runtime_archs(t)), runtime)
    b = service_builder(t, parent).run(f"""
        {WITH_CACHES}
        git clone --depth 1 --branch "v${{SGLANG_VERSION}}" https://github.com/sgl-project/sglang.git /workspace/sglang
        cd /workspace/sglang/sgl-kernel && AMDGPU_TARGET="{';'.join(t.archs)}" python3 setup_rocm.py install
        cd /workspace/sglang && uv pip install -e "python[srt_hip,diffusion_hip]"
        uv pip install "git+https://github.com/Dao-AILab/fast-hadamard-transform@rocm"
        """, caches=caches(t, p, "uv", "ccache"), title="build SGLang and its ROCm kernel")
    return finish(b, t, SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN="1", SGLANG_INT4_WEIGHT="0",
                  SGLANG_MOE_PADDING="1", SGLANG_SET_CPU_AFFINITY="1", SGLANG_ROCM_DISABLE_LINEARQUANT="0",
                  SGLANG_ROCM_FUSED_DECODE_MLA="1", SGLANG_USE_AITER="1", SGLANG_USE_ROCM700A="1")


def runtime_archs(t: Target) -> tuple[str, ...]:
    """The vLLM 0.14.1 image SGLang starts from is built for vLLM 0.13+'s arch set on this release."""
    return ("gfx908", "gfx90a", "gfx942") if t.original_backend_version.startswith("6.") else (
        "gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101", "gfx1200", "gfx1201", "gfx1150", "gfx1151")
