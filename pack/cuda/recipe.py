"""NVIDIA CUDA: runtime on the cuDNN devel image; vLLM built from its tag against cu12x torch wheels;
SGLang on top of the release's vLLM 0.14.1 image; VoxBox on the runtime."""

from dataclasses import replace
from pathlib import Path

from runner.compose.kit import WITH_CACHES, add_patches, caches, finish, pick, runtime_builder, service_builder, shared, torch_stage
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang", "voxbox")
HERE = Path(__file__).parent

TORCH = {">=0.14": "2.9.1", ">=0.11.2": "2.9.0", ">=0.10.2": "2.8.0"}
SGL_KERNEL = {">=0.5.8": "0.3.21", ">=0.5.7": "0.3.20", ">=0.5.6": "0.3.19", ">=0.5.5": "0.3.17.post1", ">=0.5.4": "0.3.16.post3"}
FLASHINFER = {">=0.14": "0.6.1", ">=0.11.2": "0.5.3", ">=0.10.2": "0.3.1"}
SGLANG_BASE_VLLM = "0.14.1"


def torch_cuda(t: Target) -> str:
    """CUDA release the torch wheels are built for: 12.6 images use the cu128 wheels."""
    return "12.8.1" if t.original_backend_version.startswith("12.6") else t.original_backend_version


def cu_index(t: Target) -> str:
    major, minor = torch_cuda(t).split(".")[:2]
    return f"https://download.pytorch.org/whl/cu{major}{minor}"


def runtime(t: Target, base: Stage) -> Stage:
    return runtime_builder(t, base, home="/usr/local/cuda").build()


def service(t: Target, runtime: Stage) -> Stage:
    return {"vllm": vllm, "sglang": sglang, "voxbox": voxbox}[t.service](t, runtime)


@shared
def vllm(t: Target, runtime: Stage) -> Stage:
    p, torch = runtime.platform, pick(t.service_version, TORCH, "torch")
    arch_list = " ".join(t.archs)
    with_torch = torch_stage(t, runtime, torch, "torchvision", "torchaudio", index=cu_index(t))
    build = (
        service_builder(t, with_torch, name="vllm-build", kind="vllm-build")
        .arg("VLLM_TORCH_VERSION", torch, doc="torch the vLLM release needs")
        .run('git clone --depth 1 --branch "v${VLLM_VERSION}" https://github.com/vllm-project/vllm.git /workspace/vllm',
             title="fetch vLLM at its release tag")
    )
    build = (
        add_patches(build, t, HERE, "/workspace/vllm")
        .run(f"""
            {WITH_CACHES}
            export TORCH_CUDA_ARCH_LIST="{arch_list}" VLLM_TARGET_DEVICE=cuda CCACHE_DIR=/root/.cache/ccache
            export MAX_JOBS=$(( $(nproc) / 2 < 2 ? 2 : ( $(nproc) / 2 > 8 ? 8 : $(nproc) / 2 ) ))
            cd /workspace/vllm
            python3 use_existing_torch.py
            uv pip install -r requirements/build.txt
            python3 -m build --wheel --no-isolation --outdir /workspace/wheels
            """, caches=caches(t, p, "uv", "pip", "ccache"), title="build the vLLM wheel from its tag")
        .build()
    )
    b = (
        service_builder(t, with_torch)
        .arg("VLLM_TORCH_VERSION", torch, doc="torch the vLLM release needs")
        .copy_from(build, "/workspace/wheels", "/workspace/wheels")
        .run(f"""
            {WITH_CACHES}
            uv pip install /workspace/wheels/*.whl "flashinfer-python=={pick(t.service_version, FLASHINFER)}" \\
                "cuda-python=={torch_cuda(t).rsplit('.', 1)[0]}" "pynvml=={torch_cuda(t).split('.')[0]}" \\
                nvidia-nvshmem-cu12 "bitsandbytes>=0.46.1" "vllm[audio]"
            ray_version=$(python3 -c 'import ray; print(ray.__version__)')
            uv pip install "ray[client]==${{ray_version}}" "ray[default]==${{ray_version}}"
            rm -rf /workspace/wheels
            """, caches=caches(t, p, "uv"), title="install vLLM, its torch, FlashInfer and Ray")
    )
    return finish(b, t, VLLM_TORCH_VERSION=torch, RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES="1",
                  SAFETENSORS_FAST_GPU="1", RUNAI_STREAMER_MEMORY_LIMIT="0", RUNAI_STREAMER_LOG_TO_STDERR="1",
                  RUNAI_STREAMER_LOG_LEVEL="INFO", OPAL_PREFIX="/opt/hpcx/ompi", OMPI_MCA_coll_hcoll_enable="0")


def sglang(t: Target, runtime: Stage) -> Stage:
    """SGLang images start from the release's vLLM image, so torch and Ray come with it."""
    p = runtime.platform
    parent = vllm(replace(t, service="vllm", service_version=SGLANG_BASE_VLLM, archs=t.archs), runtime)
    diffusion = '"sglang[diffusion]"' if p == "linux/amd64" else ""
    b = (
        service_builder(t, parent)
        .arg("SGLANG_KERNEL_VERSION", pick(t.service_version, SGL_KERNEL, "sgl-kernel"), doc="prebuilt sgl-kernel")
        .run(f"""
            {WITH_CACHES}
            uv pip install "sglang[all]==${{SGLANG_VERSION}}" "sgl-kernel==${{SGLANG_KERNEL_VERSION}}" {diffusion}
            uv pip uninstall runai-model-streamer || true
            """, caches=caches(t, p, "uv"), title="install SGLang and sgl-kernel")
    )
    return finish(b, t, SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN="1", SGLANG_INT4_WEIGHT="0",
                  SGLANG_MOE_PADDING="1", SGLANG_SET_CPU_AFFINITY="1")


def voxbox(t: Target, runtime: Stage) -> Stage:
    p = runtime.platform
    with_torch = torch_stage(t, runtime, "2.7.1", "torchaudio==2.7.1", index=cu_index(t))
    b = service_builder(t, with_torch).arg("VOXBOX_TORCH_VERSION", "2.7.1", doc="torch VoxBox needs").run(
        f"{WITH_CACHES}\nuv pip install 'transformers==4.51.3' 'numba==0.61.2' 'llvmlite==0.44.0' 'httpx<1.0' 'vox-box=={t.service_version}'",
        caches=caches(t, p, "uv"), title="install VoxBox and its pins")
    return finish(b, t, VOXBOX_TORCH_VERSION="2.7.1")
