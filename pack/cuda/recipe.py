"""NVIDIA CUDA: the seed-era rows (OFFICIAL.compiled) compile, with the runtime on the cuDNN devel image; vLLM
and its kernels built from their sources against the cu12x torch wheels (once per torch CUDA release,
torch and platform: 12.6 images use 12.8.1's builds, as their torch is cu128), installed with the
multi-node stack (GDRCopy, HPC-X, AWS EFA, NVSHMEM); SGLang on the release's vLLM 0.14.1 image.
Every other vLLM and SGLang row layers the official image (runner.compose.official). VoxBox is built
on the runtime."""

import re
from dataclasses import replace
from pathlib import Path

from runner.compose.builds import Toolchain, flash_attn_source, kernel_build, lmcache_source, sglang_router, vllm_patches
from runner.compose.components import LeftOut, native, python
from runner.compose.official import Official
from runner.compose.kit import (OTEL_BETAS, SGLANG_OVER_VLLM, RAY_EXTRAS, rust_toolchain, at_least, built_wheels, caches, finish,
                                install, install_built, pick, pick_or, runtime_builder, service_builder, shared, torch_stage)
from runner.compose.requirements import Requirements, pkg
from runner.compose.sources import Download, github
from runner.compose.stages import Mount, Stage, StageBuilder, base_stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang", "voxbox")
HERE = Path(__file__).parent
TORCH_INDEX = "https://download.pytorch.org/whl/cu{}"

TORCH = {">=0.14": "2.9.1", ">=0.11.2": "2.9.0", ">=0.10.2": "2.8.0"}
FLASHINFER = {">=0.12": "0.5.3", ">=0.11.2": "0.5.2", ">=0.11": "0.3.1", ">=0.10.2": "0.3.0"}  # vLLM's own pins
SGLANG_FLASHINFER = {">=0.5.8": "0.6.1", ">=0.5.6": "0.5.3", ">=0.5.5": "0.5.2", ">=0.5.4": "0.5.0"}  # SGLang's pins
FLASH_ATTN = {">=0.12": "2.8.3", ">=0.11": "2.8.2"}
LMCACHE = {">=0.14": "0.3.12", ">=0.13": "0.3.11", ">=0.12": "0.3.10.post1", ">=0.11.2": "0.3.9.post2",
           ">=0.11": "0.3.9.post1", ">=0.10.2": "0.3.6"}
MOONCAKE = {">=0.14": "0.3.8.post1", ">=0.12": "0.3.7.post2"}
OMNI = {">=0.14": "2c294a7"}  # vllm-omni commit for this vLLM
EP_KERNELS = {">=0.12": ("9b680f42", "b57e5e21", "12cecfda")}  # DeepGEMM, DeepEP, pplx-kernels commits
SGL_KERNEL = {">=0.5.8": "0.3.21", ">=0.5.7": "0.3.20", ">=0.5.6": "0.3.19", ">=0.5.5": "0.3.17.post1",
              ">=0.5.4": "0.3.16.post4"}
SGLANG_BASE_VLLM = "0.14.1"
# SGLang is the service of its image, so its pins win over what the vLLM image brought: timm below the
# extras' floor, its own cuda-python (0.5.8: ==12.9, over the bindings a CUDA 12.8 vLLM image took), and
# with the diffusion extra OpenCV 4.10 (vLLM asks >=4.13) and the diffusion stack vllm-omni also pins
DIFFUSION_OVER_VLLM = (("vllm", "opencv-python-headless"), ("vllm-omni", "imageio"), ("vllm-omni", "cache-dit"),
                       ("vllm-omni", "diffusers"))
VOXBOX_TORCH = "2.7.1"

GDRCOPY = "2.5.1"
HPCX = Download("HPC-X", "https://content.mellanox.com/hpc/hpc-x/v{version}_cuda12/hpcx-v{version}-gcc-inbox-"
                "ubuntu22.04-cuda12-{arch}.tbz", "2.24.1")
EFA = Download("AWS EFA", "https://efa-installer.amazonaws.com/aws-efa-installer-{version}.tar.gz", "1.44.0")
NVSHMEM = Download("NVSHMEM", "https://developer.download.nvidia.com/compute/nvshmem/redist/libnvshmem/linux-{arch}/"
                   "libnvshmem-linux-{arch}-{version}_cuda12-archive.tar.xz", "3.4.5")
FLASH_ATTN_WHEEL = ("https://github.com/Dao-AILab/flash-attention/releases/download/v{version}/flash_attn-{version}"
                    "+cu12torch{torch}cxx11abi{abi}-cp{py}-cp{py}-linux_{arch}.whl")  # a Download per version
FLASHINFER_JIT = "https://flashinfer.ai/whl/cu{cu}"  # the ahead-of-time kernels, per CUDA release
KERNELS = Toolchain("CUDA_ARCHS", "compute capabilities the kernels are built for",
                    'TORCH_CUDA_ARCH_LIST="${CUDA_ARCHS}" NVCC_THREADS=1')

LEFT_OUT = (
    LeftOut("flashinfer 0.6.1 (vLLM 0.14.1)", "vLLM 0.14.1 requires flashinfer-python==0.5.3; the released image "
            "installs 0.6.1 over it and fails `pip check`; this image keeps vLLM's own pin (SGLang images take "
            "SGLang's own FlashInfer pin)", ("vllm",)),
    LeftOut("DeepGEMM, DeepEP, pplx-kernels (vLLM < 0.12)", "the released images build them from vLLM 0.12 on", ("vllm",)),
    LeftOut("flash-attn on arm64 without a prebuilt wheel", "flash-attn's own build supports amd64 only", ("vllm", "sglang")),
    LeftOut("rows after the seed era: vLLM and SGLang compiled here", "they layer the official image (OFFICIAL): its "
            "kernels, torch and CUDA are the image's; a CUDA 12.8-or-older row of vLLM takes vLLM's default image, and "
            "the vLLM patches are not carried (not proven here against those versions' sources; vLLM 0.32.0 has both "
            "fixes upstream's patches make)", ("vllm", "sglang")),
    LeftOut("vllm-omni on a layered row whose vLLM minor has no vllm-omni release", "the layered rows take vllm-omni's "
            "release from the package index (OMNI_RELEASES); upstream builds a commit of it instead", ("vllm",)),
)


def vllm_image(t: Target) -> str:
    """vLLM's official image for a row: per CUDA release, as vLLM names its tags (13.0 is its default
    from 0.20; before, 12.9 was, and a CUDA 12.8-or-older row takes that default image)."""
    v, cuda = t.service_version, t.original_backend_version
    if at_least(cuda, "13"):
        return f"vllm/vllm-openai:v{v}-" + ("ubuntu2404" if at_least(v, "0.20") else "cu130")
    if at_least(cuda, "12.9") and at_least(v, "0.20"):
        return f"vllm/vllm-openai:v{v}-cu129-ubuntu2404"
    return f"vllm/vllm-openai:v{v}"


def sglang_image(t: Target) -> str:
    """SGLang's official image for a row, tagged per CUDA release (cu130, cu129, cu128)."""
    return f"lmsysorg/sglang:v{t.service_version}-cu{cuda_tag(t.original_backend_version)}"


# ray[cgraph] asks for cupy-cuda12x while vLLM's CUDA images ship cupy-cuda13x (its KV connectors'
# requirement): both fill the one cupy/ folder, so the later install breaks the earlier one and removing
# either breaks the other. Both go, and the row's CUDA major is installed again at the image's version
# (upstream does the same since July 2026); an image with one CuPy is left as it is. pip check is
# content: ray asks for cupy only under its extra.
ONE_CUPY_BEFORE = """\
if ! { python3 -m pip show -q cupy-cuda12x && python3 -m pip show -q cupy-cuda13x; } 2>/dev/null; then
    python3 -m pip list 2>/dev/null | grep -i '^cupy' || true
    exit 0
fi
CUPY_VERSION=$(python3 -m pip show cupy-cuda13x | sed -n 's/^Version: //p')
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
uv pip uninstall cupy-cuda12x cupy-cuda13x
rm -rf "$site/cupy" "$site/cupyx" "$site/cupy_backends"
"""


def one_cupy(t: Target) -> Requirements:
    """The row's CuPy at the version the image had (known only in the image: a resolve takes any)."""
    name = f"cupy-cuda{t.original_backend_version.split('.')[0]}x"
    return Requirements((pkg(name, built=f'"{name}==${{CUPY_VERSION}}"', resolve_as=name),),
                        title="one CuPy, for the row's CUDA release")


# vllm-omni on a layered row: its release on the package index for the row's vLLM minor (upstream builds
# a commit of it on every layered row; a minor without a release goes without, see LEFT_OUT), with the
# ONNX runtime and SoX its audio models load
OMNI_RELEASES = ("0.16.0", "0.18.0", "0.20.0", "0.22.0", "0.24.0", "0.30.0")


def omni_release(t: Target) -> tuple[Requirements, tuple] | None:
    release = ".".join(t.service_version.split(".")[:2]) + ".0"
    if release not in OMNI_RELEASES:
        return None
    return (Requirements((pkg(f"vllm-omni=={release}"), pkg("onnxruntime"), pkg("sox")), title=f"vllm-omni {release}"),
            (python("vllm-omni", release, imports=("vllm_omni",)),))


OFFICIAL = Official(
    HERE, compiled={"vllm": ">=0.10.2,<=0.14.1", "sglang": ">=0.5.4,<=0.5.8"},
    images={"vllm": vllm_image, "sglang": sglang_image}, ray="2.54.0",
    env={"vllm": {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1", "SAFETENSORS_FAST_GPU": "1",
                  "RUNAI_STREAMER_MEMORY_LIMIT": "0", "RUNAI_STREAMER_LOG_TO_STDERR": "1", "RUNAI_STREAMER_LOG_LEVEL": "INFO"},
         "sglang": {"SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1", "SGLANG_INT4_WEIGHT": "0",
                    "SGLANG_MOE_PADDING": "1", "SGLANG_SET_CPU_AFFINITY": "1"}},
    after_ray={"vllm": ((one_cupy, ONE_CUPY_BEFORE),)}, adds={"vllm": omni_release})


def cuda_tag(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}{minor}"


def torch_cuda(t: Target) -> str:
    """CUDA release the torch wheels and kernel builds are for: 12.6 images use the cu128 wheels."""
    return "12.8.1" if t.original_backend_version.startswith("12.6") else t.original_backend_version


def base(t: Target, platform: str) -> Stage:
    return OFFICIAL.base(t, platform) if OFFICIAL.layers(t) else base_stage(t.base_image, platform)


def runtime(t: Target, base: Stage) -> Stage:
    return runtime_builder(t, base, home="/usr/local/cuda", mpi=False).build()


def service(t: Target, runtime: Stage) -> Stage:
    if OFFICIAL.layers(t):
        return OFFICIAL.service(t, runtime)
    return {"vllm": vllm, "sglang": sglang, "voxbox": voxbox}[t.service](t, runtime)


def build_target(t: Target) -> Target:
    """The release the kernels build on: the torch CUDA release's own runtime and arch list."""
    cuda = torch_cuda(t)
    if cuda == t.original_backend_version:
        return t
    return replace(t, original_backend_version=cuda, backend_version=".".join(cuda.split(".")[:2]),
                   base_image=re.sub(re.escape(t.original_backend_version), cuda, t.base_image), archs=t.archs)


def arch_list(t: Target) -> str:
    cuda = torch_cuda(t)
    return ("7.5 8.0+PTX 8.9 9.0 10.0 10.3 12.0 12.1+PTX" if at_least(cuda, "12.9") else "7.5 8.0+PTX 8.9 9.0 10.0+PTX 12.0+PTX")


def build_runtime(t: Target, platform: str) -> Stage:
    bt = build_target(t)
    return runtime(bt, base_stage(bt.base_image, platform))


@shared
def build_base(t: Target, platform: str, torch: str) -> Stage:
    """torch and the build dependencies on the torch CUDA release's runtime: what every kernel builds on."""
    bt = build_target(t)
    rt = build_runtime(t, platform)
    with_torch = torch_stage(bt, rt, torch, index=TORCH_INDEX.format(cuda_tag(bt.original_backend_version)))
    major_minor = ".".join(bt.original_backend_version.split(".")[:2])
    deps = Requirements(tuple(pkg(p) for p in ("requests", "pyyaml", "einops", f"cuda-python=={major_minor}.*",
                                                 f"pynvml=={major_minor.split('.')[0]}.*", "nvidia-nvshmem-cu12",
                                                 "nvshmem4py-cu12")), title="kernel build dependencies")
    b = StageBuilder("vllm-build", f"kernel-build-torch{torch}", with_torch)
    return install(b, bt, deps).build()


def kernel(t: Target, base: Stage, name: str, version: str, script: str, *, gb_per_job: int = 4,
           args: dict[str, str] | None = None) -> Stage:
    """A kernel build stage (builds.kernel_build) for the torch CUDA release's arch list."""
    return kernel_build(t, base, name, version, script, toolchain=KERNELS, archs=arch_list(t), gb_per_job=gb_per_job,
                        args=args)


@shared
def vllm_build(t: Target, platform: str, version: str) -> Stage:
    base = build_base(t, platform, pick(version, TORCH, "torch"))
    return kernel(t, base, "vllm", version, f"""
        {github("vllm-project/vllm", "v${VLLM_VERSION}").clone("/tmp/vllm")}
        cd /tmp/vllm && python3 use_existing_torch.py
        uv pip install -r requirements/build.txt
        VLLM_TARGET_DEVICE=cuda COMPILE_CUSTOM_KERNELS=1 python3 -m build --wheel --no-isolation --outdir /workspace/vllm
        rm -rf /tmp/vllm""", args={"VLLM_VERSION": version})


@shared
def flash_attn_build(t: Target, platform: str, torch: str, version: str) -> Stage:
    py = t.python.replace(".", "")
    wheel = Download("flash-attn wheel", FLASH_ATTN_WHEEL, version)
    fields = dict(torch=".".join(torch.split(".")[:2]), abi="${abi}", py=py, arch="$(uname -m)")
    name = f"flash_attn-{version}+cu12torch{fields['torch']}cxx11abi${{abi}}-cp{py}-cp{py}-linux_$(uname -m).whl"
    return kernel(t, build_base(t, platform, torch), "flash-attn", version, f"""
        for abi in FALSE TRUE; do  # a prebuilt wheel when one exists, for either C++ ABI
            if {wheel.fetch(f"/workspace/flash-attn/{name}", **fields)}; then exit 0; fi
        done{flash_attn_source(version, "BUILD_TARGET=cuda")}""", gb_per_job=8)


@shared
def gdrcopy_build(t: Target, platform: str) -> Stage:
    return kernel(t, build_runtime(t, platform), "gdrcopy", GDRCOPY, f"""
        apt-get update && apt-get install -y --no-install-recommends devscripts debhelper fakeroot dkms
        {github("NVIDIA/gdrcopy", f"v{GDRCOPY}").clone("/tmp/gdrcopy")}
        cd /tmp/gdrcopy/packages && CUDA=/usr/local/cuda ./build-deb-packages.sh
        mv /tmp/gdrcopy/packages/*.deb /workspace/gdrcopy/""")


@shared
def ep_kernels_build(t: Target, platform: str, torch: str, commits: tuple[str, str, str]) -> Stage:
    """DeepGEMM, and DeepEP and pplx-kernels on NVSHMEM, for Hopper and Blackwell."""
    deepgemm, deepep, pplx = commits
    archs = "9.0a 10.0a+PTX" + (" 10.3" if at_least(torch_cuda(t), "12.9") else "")
    return kernel(t, build_base(t, platform, torch), "ep-kernels", f"{deepgemm}/{deepep}/{pplx}", f"""
        export TORCH_CUDA_ARCH_LIST="{archs}" NVSHMEM_DIR=/usr/local/nvshmem
        mkdir -p "$NVSHMEM_DIR"
        if [[ "$(uname -m)" == aarch64 ]]; then arch=sbsa; else arch="$(uname -m)"; fi
        {NVSHMEM.fetch(arch="${arch}")} | tar -xJ --strip-components=1 -C "$NVSHMEM_DIR"
        export CMAKE_PREFIX_PATH="$NVSHMEM_DIR/lib/cmake:${{CMAKE_PREFIX_PATH:-}}"
        {github("deepseek-ai/DeepGEMM", deepgemm).clone("/tmp/deepgemm")}
        (cd /tmp/deepgemm && python3 -m build --wheel --no-isolation --outdir /workspace/ep-kernels)
        {github("deepseek-ai/DeepEP", deepep).clone("/tmp/deepep")}
        (cd /tmp/deepep && sed -i 's/NUM_CPU_TIMEOUT_SECS 100$/NUM_CPU_TIMEOUT_SECS 1000/' csrc/kernels/configs.cuh \\
            && python3 -m build --wheel --no-isolation --outdir /workspace/ep-kernels)
        {github("ppl-ai/pplx-kernels", pplx).clone("/tmp/pplx")}
        (cd /tmp/pplx && python3 -m build --wheel --no-isolation --outdir /workspace/ep-kernels)
        rm -rf /tmp/deepgemm /tmp/deepep /tmp/pplx""")


@shared
def lmcache_build(t: Target, platform: str, torch: str, version: str) -> Stage:
    return kernel(t, build_base(t, platform, torch), "lmcache", version, lmcache_source(version), gb_per_job=2)


@shared
def omni_build(t: Target, platform: str, torch: str, commit: str) -> Stage:
    return kernel(t, build_base(t, platform, torch), "vllm-omni", commit, f"""
        {github("vllm-project/vllm-omni", commit).clone("/tmp/omni")}
        cd /tmp/omni
        [[ "$(uname -m)" == x86_64 ]] || sed -i '/"fa3-fwd/d' pyproject.toml  # its FlashAttention-3 wheel is amd64 only
        python3 -m build --wheel --no-isolation --outdir /workspace/vllm-omni""")


@shared
def vllm(t: Target, runtime: Stage) -> Stage:
    p, v = runtime.platform, t.service_version
    torch = pick(v, TORCH, "torch")
    cu = cuda_tag(torch_cuda(t))
    major_minor = ".".join(torch_cuda(t).split(".")[:2])
    with_torch = torch_stage(t, runtime, torch, index=TORCH_INDEX.format(cu))
    b = service_builder(t, with_torch)
    b.arg("VLLM_TORCH_VERSION", torch, required=False, doc="torch the vLLM release needs (from the torch stage)")
    gdr = gdrcopy_build(build_target(t), p)
    b.run(f"""
        dpkg -i /mnt/gdrcopy/libgdrapi_*.deb && ldconfig
        dpkg-query -L libibverbs-dev librdmacm-dev libibumad-dev | grep '\\.\\(so\\|a\\)$' | xargs -r rm -f || true
        mkdir -p /opt/hpcx && {HPCX.fetch(arch="$(uname -m)")} | tar -xj --strip-components=1 -C /opt/hpcx
        ln -sf /opt/hpcx/ompi /usr/local/mpi && ln -sf /opt/hpcx/ucx /usr/local/ucx
        sed -i 's/^\\(hwloc_base_binding_policy\\) = core$/\\1 = none/; s/^\\(btl = self\\)$/#\\1/' /opt/hpcx/ompi/etc/openmpi-mca-params.conf
        printf '%s\\n' /opt/hpcx/{{clusterkit,hcoll,nccl_rdma_sharp_plugin,ncclnet_plugin,ompi,sharp,ucc,ucx}}/lib > /etc/ld.so.conf.d/hpcx.conf
        ln -sf "/usr/lib/$(uname -m)-linux-gnu/libmlx5.so.1" "/usr/lib/$(uname -m)-linux-gnu/libmlx5.so" || true
        {EFA.fetch()} | tar -xz -C /tmp && (cd /tmp/aws-efa-installer && ./efa_installer.sh -y --skip-kmod --no-verify)
        rm -f /opt/amazon/efa/lib/libfabric.a && rm -rf /tmp/aws-efa-installer && ldconfig
        """, caches=caches(t, p, "apt"), mounts=[Mount(gdr, "/workspace/gdrcopy", "/mnt/gdrcopy")],
          title=f"GDRCopy {GDRCOPY}, HPC-X {HPCX.version}, AWS EFA {EFA.version}")
    b.component(native("GDRCopy", GDRCOPY, libs=["/usr/lib/*-linux-gnu/libgdrapi.so*"]),
                native("HPC-X", HPCX.version, ["/opt/hpcx/ompi/bin/mpirun"], ["/opt/hpcx/ucx/lib/libucp.so"]),
                native("AWS EFA", EFA.version, ["/opt/amazon/efa/bin/fi_info"], ["/opt/amazon/efa/lib/libfabric.so"]))
    install_built(b, t, [built_wheels(vllm_build(t, p, v), "vllm", ("vllm", "vllm-${VLLM_VERSION}[+-]*.whl"),
                                      resolve_as=f"vllm=={v}", components=[python("vllm", v, imports=("vllm",))],
                                      also=(pkg(f"cuda-python=={major_minor}.*"), pkg(f"pynvml=={major_minor.split('.')[0]}.*"),
                                            pkg("nvidia-nvshmem-cu12"), pkg("nvshmem4py-cu12")))],
                  prereleases=OTEL_BETAS, title=f"vLLM {v} (built from its tag) and the CUDA Python bindings")
    install(b, t, RAY_EXTRAS)
    b.component(python("ray", "", imports=("ray.dashboard",)))
    flashinfer_step(b, t, pick(v, FLASHINFER), cu)
    built = []
    if (fa := pick_or(v, FLASH_ATTN)) and p == "linux/amd64":  # see LEFT_OUT for arm64
        built.append(built_wheels(flash_attn_build(t, p, torch, fa), "flash-attn", ("flash-attn", "*.whl"),
                                  resolve_as=f"flash-attn=={fa}", components=[python(
                                      "flash-attn", fa, libs=["/usr/local/lib/python3*/dist-packages/flash_attn_2_cuda*.so"])]))
    if (ep := pick_or(v, EP_KERNELS, None)):
        built.append(built_wheels(ep_kernels_build(t, p, torch, ep), "ep-kernels", ("deep-gemm", "deep_gemm*.whl"),
                                  ("deep-ep", "deep_ep*.whl"), ("pplx-kernels", "pplx_kernels*.whl"),
                                  components=[python("DeepGEMM", "", dist="deep-gemm"), python("DeepEP", "", dist="deep-ep"),
                                              python("pplx-kernels", "")]))
    lm = pick(v, LMCACHE)
    built.append(built_wheels(lmcache_build(t, p, torch, lm), "lmcache", ("lmcache", "*.whl"), resolve_as=f"lmcache=={lm}",
                              components=[python("lmcache", lm, imports=("lmcache.integration.vllm.vllm_v1_adapter",))]))
    if (omni := pick_or(v, OMNI)):
        built.append(built_wheels(omni_build(t, p, torch, omni), "vllm-omni", ("vllm-omni", "*.whl"),
                                  resolve_as=f"vllm-omni=={v.rsplit('.', 1)[0]}.0",
                                  without=() if p == "linux/amd64" else ("fa3-fwd",),  # the build drops it off amd64
                                  also=(pkg("onnxruntime"), pkg("sox")),
                                  components=[python("vllm-omni", omni, dist="", imports=("vllm_omni",))]))
    install_built(b, t, built, no_build_isolation=True, title="kernels and connectors built for this torch")
    extras = ["accelerate", "hf_transfer", "modelscope", "timm>=1.0.17", "boto3", "librosa", "soundfile",
              "mistral_common[audio]", "bitsandbytes>=0.46.1 ; platform_machine == 'x86_64'",
              "bitsandbytes>=0.42.0 ; platform_machine == 'aarch64'", "nixl>=0.7.1"]
    if (mc := pick_or(v, MOONCAKE)):
        extras.append(f"mooncake-transfer-engine=={mc}")
        b.component(python("mooncake", mc, dist="mooncake-transfer-engine"))
    install(b, t, Requirements(tuple(pkg(e) for e in extras), prereleases=OTEL_BETAS,
                               title="KV connectors (nixl, Mooncake), audio and model-hub extras"))
    b.component(python("nixl", ""))
    vllm_patches(b, t, HERE, omni=bool(omni))
    return finish(b, t, VLLM_TORCH_VERSION=torch, RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES="1",
                  SAFETENSORS_FAST_GPU="1", RUNAI_STREAMER_MEMORY_LIMIT="0", RUNAI_STREAMER_LOG_TO_STDERR="1",
                  RUNAI_STREAMER_LOG_LEVEL="INFO", OPAL_PREFIX="/opt/hpcx/ompi", OMPI_MCA_coll_hcoll_enable="0",
                  PATH="/usr/local/mpi/bin:/usr/local/ucx/bin:/usr/local/cuda/bin:${PATH}:/opt/amazon/efa/bin",
                  LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH}")


@shared
def sglang_build(t: Target, platform: str, version: str) -> Stage:
    """The SGLang wheel from its tag (torch pins loosened: torch comes from the vLLM image) and its router."""
    base = build_base(t, platform, pick(SGLANG_BASE_VLLM, TORCH))
    return kernel(t, base, "sglang", version, f"""
        {github("sgl-project/sglang", "v${SGLANG_VERSION}").clone("/tmp/sglang")}
        cd /tmp/sglang/python
        cp ../README.md ../LICENSE . 2>/dev/null || true
        sed -i 's/"torch==[^"]*"/"torch"/; s/"torchaudio==[^"]*"/"torchaudio"/' pyproject.toml
        uv pip install "grpcio-tools==1.75.1"
        python3 -m build --wheel --no-isolation --outdir /workspace/sglang
        {rust_toolchain()}{sglang_router()}
        rm -rf /tmp/sglang /root/.cargo /root/.rustup""", gb_per_job=2, args={"SGLANG_VERSION": version})


def flashinfer_step(b: StageBuilder, t: Target, version: str, cu: str, over: str = "") -> None:
    """FlashInfer in a step of its own (never in the same resolve as the service that pins it), with
    its ahead-of-time kernels from 0.5 on; `over` names the service whose own pin this one replaces."""
    reqs = [pkg(f"flashinfer-python=={version}")]
    aot = at_least(version, "0.5")  # the ahead-of-time kernels and cubins come as packages from 0.5 on
    if aot:
        reqs += [pkg(f"flashinfer-cubin=={version}"), pkg(f"flashinfer-jit-cache=={version}+cu{cu}")]
    names = tuple(p.name for p in reqs)
    install(b, t, Requirements(tuple(reqs), extra_index_urls=((FLASHINFER_JIT.format(cu=cu),) if aot else ()),
                               upgrade=names if over else (), supersedes=tuple((over, n) for n in names[:2]) if over else (),
                               title=f"FlashInfer {version}" + (" with its ahead-of-time kernels" if aot else "")
                               + (f" (SGLang's, over {over}'s)" if over else "")))
    b.component(python("flashinfer", version, dist="flashinfer-python", imports=("flashinfer",)))
    if aot:
        b.component(python("flashinfer-cubin", version), python("flashinfer-jit-cache", version))


def sglang(t: Target, runtime: Stage) -> Stage:
    """SGLang images start from the release's vLLM image, so torch and Ray come with it."""
    p, v = runtime.platform, t.service_version
    parent = vllm(replace(t, service="vllm", service_version=SGLANG_BASE_VLLM, archs=t.archs), runtime)
    kernel_version = pick(v, SGL_KERNEL, "sgl-kernel")
    b = service_builder(t, parent)
    b.arg("SGLANG_KERNEL_VERSION", kernel_version, doc="prebuilt sgl-kernel")
    extras = ("diffusion",) if p == "linux/amd64" and at_least(v, "0.5.5") else ()  # the extra appeared in 0.5.5
    over = tuple(("vllm", n) for n in SGLANG_OVER_VLLM) + (DIFFUSION_OVER_VLLM if extras else ())
    reqs = Requirements((pkg("sglang", extras=extras, built=f'"$(ls /mnt/sglang/sglang-${{SGLANG_VERSION}}-*.whl){"[diffusion]" if extras else ""}"',
                             resolve_as=f"sglang{'[diffusion]' if extras else ''}=={v}",
                             without=("torch", "torchaudio", "torchvision", "flashinfer-python", "flashinfer-cubin",
                                      "sgl-kernel")),  # torch is the image's; FlashInfer gets a step of its own
                         pkg("sgl-kernel==${SGLANG_KERNEL_VERSION}"),
                         pkg("sglang-router", built="/mnt/sglang/sglang_router*.whl")),
                        prereleases=OTEL_BETAS, upgrade=(*(n for _, n in over), "timm", "cuda-python"),  # SGLang wins: see DIFFUSION_OVER_VLLM
                        supersedes=over, title=f"SGLang {v} (built from its tag), sgl-kernel and the router")
    install(b, t, reqs, after="uv pip uninstall runai-model-streamer || true",
            mounts=[Mount(sglang_build(t, p, v), "/workspace/sglang", "/mnt/sglang")])
    fi, base_fi = pick(v, SGLANG_FLASHINFER, "FlashInfer"), pick(SGLANG_BASE_VLLM, FLASHINFER)
    if fi != base_fi:  # SGLang is the service here: its FlashInfer pin wins over the vLLM image's
        flashinfer_step(b, t, fi, cuda_tag(torch_cuda(t)), over="vllm")
    b.component(python("sglang", v, imports=("sglang",)), python("sgl-kernel", kernel_version),
                python("sglang-router", "", imports=("sglang_router",)))
    return finish(b, t, SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN="1", SGLANG_INT4_WEIGHT="0",
                  SGLANG_MOE_PADDING="1", SGLANG_SET_CPU_AFFINITY="1")


def voxbox(t: Target, runtime: Stage) -> Stage:
    with_torch = torch_stage(t, runtime, VOXBOX_TORCH, index=TORCH_INDEX.format(cuda_tag(torch_cuda(t))))
    b = service_builder(t, with_torch)
    b.arg("VOXBOX_TORCH_VERSION", VOXBOX_TORCH, required=False, doc="torch VoxBox needs (from the torch stage)")
    reqs = Requirements((pkg("transformers==4.51.3"), pkg("numba==0.61.2"), pkg("llvmlite==0.44.0"), pkg("httpx<1.0"),
                         pkg("vox-box==${VOXBOX_VERSION}")),
                        # openai-whisper 20240930 is an sdist whose build imports pkg_resources (setuptools < 81)
                        build_constraints=("setuptools<81",), title="VoxBox and its pins")
    install(b, t, reqs)
    b.component(python("vox-box", t.service_version, imports=("vox_box",)), python("openai-whisper", "20240930"))
    return finish(b, t, VOXBOX_TORCH_VERSION=VOXBOX_TORCH)
