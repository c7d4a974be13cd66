"""Ascend CANN: runtime on the CANN image of the chip variant; vLLM (device "empty") with vllm-ascend,
Mooncake with Ascend direct transport and vllm-omni; MindIE from its installer with its pinned
dependencies and ATB models; SGLang from its NPU project file with sgl-kernel-npu, custom ops and the
BiSheng compiler. Everything shares the release's runtime and its torch with torch-npu. Those are the
seed-era rows (OFFICIAL.compiled); every other vLLM and SGLang row layers the official vllm-ascend or
SGLang image (runner.compose.official). MindIE always installs from its installer."""

from pathlib import Path

from runner.compose.builds import (LMCACHE_ASCEND_LIBRARIES, lmcache_ascend_source, mooncake_source, sglang_router,
                                   vllm_patches)
from runner.compose.components import LeftOut, native, python
from runner.compose.official import Official
from runner.compose.kit import (OTEL_BETAS, WITH_CACHES, BuiltWheels, built_wheels, max_jobs, rust_toolchain, caches, finish, install, pick, pick_or,
                                runtime_builder, service_builder, shared, torch_held, torch_stage)
from runner.compose.requirements import Requirements, pkg
from runner.compose.shell import word
from runner.compose.sources import Download, github
from runner.compose.stages import Mount, Stage, StageBuilder, base_stage
from runner.model.errors import UserError
from runner.model.targets import Target

SERVICES = ("mindie", "vllm", "sglang")
HERE = Path(__file__).parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # torch-npu on amd64 needs torch's +cpu build
ASCEND_INDEX = "https://mirrors.huaweicloud.com/ascend/repos/pypi"  # torch-npu and vllm-ascend dev builds

# vLLM -> (torch, torch-npu, vllm-ascend): vllm-ascend's own pins (0.9.x: torch 2.5.1; 0.10.x: a torch-npu dev build)
VLLM_ASCEND = {">=0.14": ("2.9.0", "2.9.0", "0.14.0rc1"), ">=0.13": ("2.8.0", "2.8.0", "0.13.0"),
               ">=0.12": ("2.8.0", "2.8.0", "0.12.0rc1"), ">=0.11": ("2.7.1", "2.7.1", "0.11.0rc3"),
               ">=0.10.2": ("2.7.1", "2.7.1.dev20250724", "0.10.2rc1"), ">=0.10.1": ("2.7.1", "2.7.1.dev20250724", "0.10.1rc1"),
               ">=0.10": ("2.7.1", "2.7.1.dev20250724", "0.10.0rc1"), ">=0.9.2": ("2.5.1", "2.5.1.post1.dev20250619", "0.9.2rc1"),
               ">=0.9": ("2.5.1", "2.5.1.post1", "0.9.1")}
# Mooncake and vllm-omni per vLLM release, for the compiled rows and the layered ones alike: upstream builds
# both on the vllm-ascend image too (its layered rows: vLLM 0.18 and 0.20; 0.15 to 0.17 it compiled); a later
# vLLM takes the newest Mooncake range, vllm-omni only a minor a commit was built for (LEFT_OUT)
MOONCAKE = {">=0.20": "0.3.11", ">=0.18": "0.3.9", ">=0.15": "0.3.8.post1", ">=0.10": "0.3.7.post2"}
# Mooncake releases the resolver cannot read from the index for this image, taken as given (the wheel built here installs)
MOONCAKE_UNREADABLE = {"0.3.11": "the index's aarch64 wheel needs glibc 2.39; the CANN images have 2.35"}
# the released images pin grpcio 1.71.0; vLLM 0.14 requires grpcio>=1.76, so from there vLLM's own pin holds
GRPCIO = {">=0.14": "", ">=0.9": "1.71.0"}
# vLLM before 0.14 and vllm-ascend leave transformers unbounded, and the index now serves 5.x, which these
# releases predate (vLLM 0.14 itself asks for <5): every vLLM image keeps to 4.x
TRANSFORMERS = ("transformers<5",)
# asked for beside vllm-omni at vLLM's own requirement: uv, installing vllm-omni's gradio (starlette<1), downgraded
# starlette under the 8.x vLLM's step chose (it needs >=1); asked for, it takes 7.1.0 (rehearsing vLLM 0.14.1)
OMNI_BESIDE_VLLM = "prometheus-fastapi-instrumentator>=7.0.0"
OMNI = {"~=0.20.0": "4a24a517", "~=0.18.0": "f55ea280", "~=0.17.0": "155856ff", "~=0.16.0": "3d9fa8d5",
        "~=0.15.0": "630e84ef", "~=0.14.0": "b11d436"}
SGLANG_TORCH = {">=0.5.6": "2.8.0", ">=0.5": "2.6.0"}
SGL_KERNEL_NPU = {">=0.5.8": "2026.01.28", ">=0.5.6": "2025.12.31", ">=0.5": "2025.09.15"}
SGLANG_VLLM = "0.10.2"  # the vLLM SGLang's NPU backend imports (device "empty")
# SGLang's pins that vLLM 0.10.2 forbids (uv, resolving its requirements/common.txt with each sglang[srt_npu]
# 0.5.1.post3..0.5.8: xgrammar 0.1.24/0.1.27 against 0.1.23, outlines-core 0.1.26 via outlines 0.1.11 against
# 0.2.11): installed after vLLM, as upstream does, SGLang's win and pip check allows exactly these unmet
SGLANG_OVER_VLLM_NPU = ("xgrammar", "outlines-core")
MINDIE_TORCH = "2.1.0"
# the download host names releases in capitals (2.2.RC1): the version given is that spelling
MINDIE_URL = "https://ascend-repo.obs.cn-east-2.myhuaweicloud.com/MindIE/MindIE%20{version}/Ascend-mindie_{version}_linux-{arch}_abi0.run"
# the installer does not ship the ATB models; the released images keep each release's archive in their
# repository, each only between the commit that added it and the one that replaced it: pin a commit in between
ATB_MODELS = {"2.3.0": "c78e66ca7cb248d1ddfecf3c60e100ec5bb7c982",  # added with the 8.5.0 runtime
              "2.2.rc1": "83ec08dc154e93c15294d1310372a20eadca7c6d",  # added here, removed in c78e66c
              "2.1.rc1": "7d0448846208bc4dd12e20d0ed213ea7c9974a55",  # from the first commit, removed in 83ec08d
              "2.1.rc2": "7d0448846208bc4dd12e20d0ed213ea7c9974a55"}  # named py3.11 here, removed in 83ec08d
ATB_URL = ("https://github.com/gpustack/runner/raw/{commit}/pack/cann/mindie-atb-models_{version}_linux-{arch}"
           "_py3.11_torch2.1.0-abi0.tar.gz")
CUSTOM_OPS = Download("custom_ops", "https://sglang-ascend.obs.cn-east-3.myhuaweicloud.com/ops/custom_ops-{version}.{variant}-"
                      "cp311-cp311-linux_{arch}.whl", "2.0")
BISHENG = Download("BiSheng toolkit", "https://sglang-ascend.obs.cn-east-3.myhuaweicloud.com/sglang/triton_ascend/"
                   "Ascend-BiSheng-toolkit_aarch64_{version}.run", "20251121")
BISHENG_PATH = "/usr/local/Ascend/ascend-toolkit/latest/bisheng_toolkit/bishengir/bin"
NPU_ENV = {"TASK_QUEUE_ENABLE": "1", "CPU_AFFINITY_CONF": "1", "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
SET_ENV = "source ${CANN_HOME}/ascend-toolkit/set_env.sh; source ${CANN_HOME}/nnal/atb/set_env.sh"
MINDIE_PINS = (
    "av==16.0.1", "absl-py==2.2.2", "accelerate==0.34.2", "aiohttp==3.13.3", "attrs==24.3.0", "cloudpickle==3.0.0",
    "cpm-kernels==1.0.11", "decorator==5.2.1", "easydict==1.13", "einops==0.8.1", "fuzzywuzzy==0.18.0", "gevent==24.2.1",
    "geventhttpclient==2.3.1", "grpcio==1.71.0", "icetk==0.0.4", "jieba==0.42.1", "Jinja2==3.1.6", "json5==0.13.0",
    "jsonlines==4.0.0", "jsonschema==4.23.0", "latex2mathml==3.77.0", "loguru==0.7.2", "Markdown==3.7",
    "matplotlib==3.9.2", "mdtex2html==1.3.0", "ml_dtypes==0.5.0", "nltk==3.9.1", "numba==0.61.2", "numpy==1.26.4",
    "onnx==1.20.1", "openai==2.15.0", "opencv-python-headless==4.11.0.86", "openpyxl==3.1.5", "orjson==3.11.3",
    "pandas==1.5.3", "pillow==11.2.1", "prettytable==3.11.0", "psutil==6.0.0", "pyarrow==19.0.1", "pydantic==2.12.5",
    "python-rapidjson==1.20", "posix_ipc==1.2.0", "PyYAML==6.0.2", "pathlib2==2.3.7.post1", "protobuf==6.33.4",
    "requests==2.32.3", "rouge-score==0.1.2", "rouge==1.0.1", "sacrebleu==2.4.3", "scipy==1.15.3", "sympy==1.14.0",
    "text-generation==0.7.0", "thefuzz==0.22.1", "tiktoken==0.7.0", "tornado==6.4.2", "tqdm==4.67.1",
    "transformers==4.51.3", "safetensors==0.5.3", "tritonclient==2.49.0", "typing_extensions==4.15.0",
    "tzdata==2024.2", "urllib3==2.4.0", "yarl==1.22.0", "zope.event==5.0", "zope.interface==7.0.3")

LEFT_OUT = (
    LeftOut("MindIE patches (mindie.zip) and MiniCPM's resampler.py", "their content is not known here and the "
            "resampler comes from a model hub at build time; no patch is invented", ("mindie",)),
    LeftOut("BiSheng toolkit on amd64", "the toolkit is published for aarch64 only", ("sglang",)),
    LeftOut("Mooncake on 310P", "Mooncake's Ascend transport does not support the 310P", ("vllm",)),
    LeftOut("rows after the seed era: vLLM, vllm-ascend and SGLang installed here", "they layer the official "
            "vllm-ascend or SGLang image (OFFICIAL): torch and torch-npu are the image's, and the vLLM patches are "
            "not carried (not proven here against those versions' sources)", ("vllm", "sglang")),
    LeftOut("LMCache with LMCache-Ascend on a vLLM row of CANN 9, and on CANN 9.1", "kvcache-ops builds on CANN 8.5 "
            "only (upstream skips it on CANN 9 for vLLM); SGLang's CANN 9.0 build is at a commit of LMCache-Ascend's main "
            "that upstream has not carried to CANN 9.1", ("vllm", "sglang")),
    LeftOut("vllm-omni on a vLLM row of 0.23 or later", "upstream built vllm-omni commits for Ascend up to vLLM 0.20; "
            "the index's releases are not known to run on Ascend", ("vllm",)),
)


# the vllm-ascend release each layered vLLM row's official image carries (vllm-ascend's own tags)
OFFICIAL_ASCEND = {"9.2": {"0.30.0": "0.30.0rc2"},
                   "*": {"0.30.0": "0.30.0rc1", "0.27.1": "0.27.1rc1", "0.23.0": "0.23.0", "0.20.2": "0.20.2rc1",
                         "0.18.0": "0.18.0", "0.17.0": "0.17.0rc1", "0.16.0": "0.16.0rc1", "0.15.0": "0.15.0rc1"}}
# LMCache with LMCache-Ascend on layered rows as upstream builds it, not on 310P: (service, CANN) -> {versions: (lmcache,
# LMCache-Ascend tag or commit: CANN 9 support landed on its main after v0.4.3)}
LMCACHE_ASCEND = {("vllm", "8.5"): {">=0.18": ("0.4.2", "v0.4.2")}, ("sglang", "8.5"): {">=0.5.12": ("0.4.2", "v0.4.2")},
                  ("sglang", "9.0"): {">=0.5.14": ("0.4.2", "dbd6545")}}
# the chip LMCache-Ascend builds for, in the case its platform_config/<SoC>.ini files are named (upstream's)
LMCACHE_ASCEND_SOC = {"a3": "Ascend910_9382", "910b": "Ascend910B3"}
# the CANN release the SGLang images name: 8.5.1 rows take the 8.5.0 images, as the released ones do
OFFICIAL_SGLANG_CANN = {"8.5.1": "8.5.0"}


def vllm_ascend_of(t: Target) -> str:
    found = OFFICIAL_ASCEND.get(t.backend_version, {}).get(t.service_version) or OFFICIAL_ASCEND["*"].get(t.service_version)
    if found is None:
        raise UserError(f"{t.tag}: no vllm-ascend release is declared for vLLM {t.service_version}", where=t.where,
                        hint="add the vllm-ascend release its official image carries to OFFICIAL_ASCEND in pack/cann/recipe.py")
    return found


def vllm_image(t: Target) -> str:
    """vllm-ascend's official image: 910B's has no suffix, the other chips' name theirs."""
    return f"quay.io/ascend/vllm-ascend:v{vllm_ascend_of(t)}" + ("" if t.variant == "910b" else f"-{t.variant}")


def sglang_image(t: Target) -> str:
    cann = OFFICIAL_SGLANG_CANN.get(t.original_backend_version, t.original_backend_version)
    return f"quay.io/ascend/sglang:v{t.service_version}-cann{cann}-{t.variant}"


OFFICIAL = Official(
    HERE, compiled={"vllm": ">=0.9.1,<=0.14.1", "sglang": ">=0.5.1,<=0.5.8"},
    images={"vllm": vllm_image, "sglang": sglang_image}, ray="2.48.0",
    env={"vllm": {**NPU_ENV, "RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES": "1"}, "sglang": NPU_ENV},
    builds={"vllm": lambda t, runtime: connectors(t, runtime), "sglang": lambda t, runtime: lmcache_ascend(t, runtime)},
    wrappers={"vllm": lambda b: vllm_wrapper(b)})


def base(t: Target, platform: str) -> Stage:
    return OFFICIAL.base(t, platform) if OFFICIAL.layers(t) else base_stage(t.base_image, platform)


def soc_version(t: Target) -> str:
    return {"a3": "ascend910_9391", "310p": "ascend310p1"}.get(t.variant, "ascend910b1")


def runtime(t: Target, base: Stage) -> Stage:
    b = runtime_builder(t, base, home="/usr/local/Ascend", extra_apt="clang-15")
    b.run("""
        update-alternatives --install /usr/bin/clang clang /usr/bin/clang-15 15
        update-alternatives --install /usr/bin/clang++ clang++ /usr/bin/clang++-15 15""", title="clang 15 as clang")
    b.env(PATH="/usr/local/Ascend/driver/tools:${PATH}")
    return b.build()


def service(t: Target, runtime: Stage) -> Stage:
    if OFFICIAL.layers(t):
        extra = (python("vllm-ascend", vllm_ascend_of(t), imports=("vllm_ascend",)),) if t.service == "vllm" else ()
        return OFFICIAL.service(t, runtime, components=extra)
    return {"vllm": vllm, "mindie": mindie, "sglang": sglang}[t.service](t, runtime)


def npu_torch(t: Target, runtime: Stage, torch: str, npu: str) -> Stage:
    """torch (the +cpu build on amd64) with torch-npu of the same release, shared by every service on it."""
    cpu = (CPU_INDEX,) if runtime.platform == "linux/amd64" else ()
    return torch_stage(t, runtime, torch, extra_indexes=(*cpu, ASCEND_INDEX), audio=False,
                       extra=(pkg(f"torch-npu=={npu}" if npu.count(".") > 2 else f"torch-npu=={npu}.*",
                                  prerelease="dev" in npu),), name=f"torch{torch}-npu{npu}")


def _build_env(b: StageBuilder, t: Target) -> str:
    """CANN's environment for building kernels for the target's chip (the stage's CANN_ARCHS)."""
    b.arg("CANN_ARCHS", " ".join(t.archs) or soc_version(t), doc="the Ascend SoC the kernels are built for")
    return (f'{SET_ENV}\nSOC_VERSION="${{CANN_ARCHS%% *}}"\n'
            'LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:${CANN_HOME}/ascend-toolkit/latest/$(uname -m)-linux/devlib"\n'
            'export SOC_VERSION LD_LIBRARY_PATH COMPILE_CUSTOM_KERNELS=1')


@shared
def mooncake_build(t: Target, parent: Stage, version: str) -> Stage:
    b = StageBuilder("vllm-build", "mooncake-build", parent)
    b.run(f"""
        {WITH_CACHES}
        {max_jobs(2)}
        {SET_ENV}{mooncake_source(version, "-DUSE_ASCEND_DIRECT=ON")}
        mkdir -p /workspace/mooncake && mv mooncake-wheel/dist/*.whl /workspace/mooncake/ && rm -rf /tmp/mooncake
        """, caches=caches(t, parent.platform, "uv", "ccache"), title=f"build Mooncake {version} with Ascend direct transport")
    return b.build()


@shared
def lmcache_ascend_build(t: Target, parent: Stage, ref: str) -> Stage:
    b = StageBuilder(f"{t.service}-build", "lmcache-ascend-build", parent)
    # its compile jobs take ~2 GB each; CANN's atb set_env.sh stops under `set -e` on torch >= 2.7.1 (a grep)
    b.run(f"""
        {max_jobs(2)}
        set +e; {_build_env(b, t)}; set -e
        export SOC_VERSION={LMCACHE_ASCEND_SOC[t.variant]}{lmcache_ascend_source(ref)}
        """, caches=caches(t, parent.platform, "uv", "ccache"), title=f"build LMCache-Ascend {ref}")
    return b.build()


def lmcache_ascend(t: Target, parent: Stage) -> list[BuiltWheels]:
    """LMCache and LMCache-Ascend for a layered row (LMCACHE_ASCEND), built on its official image."""
    found = pick_or(t.service_version, LMCACHE_ASCEND.get((t.service, t.backend_version), {}), None)
    if t.variant == "310p" or not OFFICIAL.layers(t) or not found:
        return []
    lmcache, ref = found
    return [built_wheels(lmcache_ascend_build(t, parent, ref), "lmcache-ascend", ("lmcache-ascend", "*.whl"),
                         also=(pkg(f"lmcache=={lmcache}"),), after=LMCACHE_ASCEND_LIBRARIES,
                         before="export NO_CUDA_EXT=1  # LMCache's sdist (arm64 has no wheel) builds no CUDA kernels",
                         components=[python("lmcache", lmcache), python("lmcache-ascend", "", imports=("lmcache_ascend",))])]


@shared
def omni_build(t: Target, parent: Stage, commit: str) -> Stage:
    b = StageBuilder("vllm-build", "vllm-omni-build", parent)
    b.run(f"""
        {_build_env(b, t)}
        {github("vllm-project/vllm-omni", commit).clone("/tmp/omni")}
        cd /tmp/omni && sed -i '/"fa3-fwd/d' pyproject.toml  # its FlashAttention-3 wheel is for CUDA
        VLLM_TARGET_DEVICE=empty python3 -m build --wheel --no-isolation --outdir /workspace/vllm-omni && rm -rf /tmp/omni
        """, caches=caches(t, parent.platform, "uv"), title=f"build vllm-omni {commit}")
    return b.build()


def connectors(t: Target, parent: Stage) -> list[BuiltWheels]:
    """Mooncake (Ascend direct transport, not on 310P) and vllm-omni built for the row's vLLM on `parent`,
    which has the torch they build against: a compiled row's torch stage, or a layered row's official image."""
    v, built = t.service_version, []
    if t.variant != "310p" and (mc := pick_or(v, MOONCAKE)):
        built.append(built_wheels(mooncake_build(t, parent, mc), "mooncake", ("mooncake-transfer-engine", "*.whl"),
                                  resolve_as="" if mc in MOONCAKE_UNREADABLE else f"mooncake-transfer-engine=={mc}",
                                  components=[python("mooncake", mc, dist="mooncake-transfer-engine")]))
    if (omni := pick_or(v, OMNI)):
        # the commit's own requirements are read from the index's release at or below the row's vLLM minor
        built.append(built_wheels(omni_build(t, parent, omni), "vllm-omni", ("vllm-omni", "*.whl"),
                                  resolve_as=f"vllm-omni<={v.rsplit('.', 1)[0]}.0", without=("onnxruntime", "torch", "fa3-fwd"),
                                  also=(pkg("onnxruntime-cann"), pkg("sox")),
                                  components=[python("vllm-omni", omni, dist="", imports=()), python("onnxruntime-cann", "")]))
    return built + lmcache_ascend(t, parent)


def vllm(t: Target, runtime: Stage) -> Stage:
    p, v = runtime.platform, t.service_version
    torch, npu, ascend = pick(v, VLLM_ASCEND, "torch and vllm-ascend")
    with_torch = npu_torch(t, runtime, torch, npu)
    b = service_builder(t, with_torch)
    b.arg("VLLM_ASCEND_VERSION", ascend, doc="vllm-ascend release")
    cpu, hold = (CPU_INDEX,) if p == "linux/amd64" else (), (*TRANSFORMERS, *torch_held(torch))
    device_empty = ("torch", "torchvision", "torchaudio", "xformers", "flashinfer-python", "numba", "ray", "triton")
    reqs = Requirements((pkg("vllm", built="/tmp/vllm", resolve_as=f"vllm=={v}", without=device_empty),),
                        extra_index_urls=cpu, prereleases=OTEL_BETAS, constraints=hold,
                        title=f"vLLM {v} from its tag (device empty)")
    install(b, t, reqs, before=f'{github("vllm-project/vllm", "v${VLLM_VERSION}").clone("/tmp/vllm")}\nexport VLLM_TARGET_DEVICE=empty',
            after="uv pip uninstall triton || true  # vllm-ascend brings triton-ascend\nrm -rf /tmp/vllm")
    ascend_reqs = Requirements((pkg("vllm-ascend", built="/tmp/vllm-ascend", resolve_as=f"vllm-ascend=={ascend}",
                                    prerelease="rc" in ascend),),
                               extra_index_urls=(*cpu, ASCEND_INDEX), no_build_isolation=False, constraints=hold,
                               title=f"vllm-ascend {ascend} from its tag")
    install(b, t, ascend_reqs, tools=("uv", "ccache"), before=f'{_build_env(b, t)}\n'
            f'{github("vllm-project/vllm-ascend", "v${VLLM_ASCEND_VERSION}").clone("/tmp/vllm-ascend")}',
            after="rm -rf /tmp/vllm-ascend")
    b.component(python("vllm", v, imports=()), python("vllm-ascend", ascend, imports=()),
                python("torch-npu", npu))
    built = connectors(t, with_torch)
    wheels, mounts, omni = [pk for w in built for pk in w.packages], [w.mount for w in built], pick_or(v, OMNI)
    b.component(*(c for w in built for c in w.components))
    ray = ">=2.47.1,<=2.48.0"  # installed and declared alike
    extras = ["accelerate", "hf_transfer", "modelscope", f"ray[client,default]{ray}", "protobuf>3.20.0",
              *([f"grpcio=={grpc}"] if (grpc := pick_or(v, GRPCIO)) else []), "librosa", "soundfile", "mistral_common[audio]",
              *([OMNI_BESIDE_VLLM] if omni else [])]
    install(b, t, Requirements((*wheels, *(pkg(e) for e in extras)), no_build_isolation=bool(wheels), constraints=hold,
                               title="Mooncake, vllm-omni, Ray and the audio and model-hub extras"),
            mounts=mounts, before="uv pip uninstall onnxruntime || true" if omni else "")
    b.component(python("ray", ray, imports=("ray",)))
    vllm_wrapper(b)
    vllm_patches(b, t, HERE, omni=bool(omni))
    return finish(b, t, PATH=f"{BISHENG_PATH}:${{PATH}}", **NPU_ENV, RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES="1")


def vllm_wrapper(b: StageBuilder) -> StageBuilder:
    """`vllm` as a wrapper that sources CANN's environment and preloads jemalloc, then runs the real `vllm_`."""
    return b.run(f"""
        real="$(command -v vllm)"
        mv "$real" "${{real}}_"
        libs="$(python3 -c 'import sys; print(sys.base_prefix)')"
        # shellcheck disable=SC2016  # the wrapper's own variables expand when it runs, not in the build
        printf '%s\\n' '#!/usr/bin/bash' '{SET_ENV}' \\
            "export LD_LIBRARY_PATH=$libs/lib:$libs/lib64:\\${{LD_LIBRARY_PATH}}" \\
            'export LD_PRELOAD=/usr/lib/'"$(uname -m)"'-linux-gnu/libjemalloc.so.2${{LD_PRELOAD:+:$LD_PRELOAD}}' \\
            'exec "${{BASH_SOURCE[0]}}_" "$@"' > "$real"
        chmod +x "$real"
        """, title="the vllm command sources CANN's environment and preloads jemalloc")


def mindie(t: Target, runtime: Stage) -> Stage:
    p, v = runtime.platform, t.service_version
    with_torch = npu_torch(t, runtime, MINDIE_TORCH, MINDIE_TORCH)
    arch = "arm64" if p == "linux/arm64" else "amd64"
    installer = Download("MindIE", MINDIE_URL, v.upper(), ("Referer: https://www.hiascend.com/",))
    atb = Download("ATB models", ATB_URL.replace("{commit}", ATB_MODELS[v]), v)
    b = service_builder(t, with_torch)
    reqs = Requirements((*(pkg(x) for x in MINDIE_PINS), pkg("atb-llm", built="${CANN_HOME}/atb-models/*.whl")),
                        constraints=torch_held(MINDIE_TORCH), title=f"MindIE {v}'s pinned dependencies and ATB models")
    install(b, t, reqs, before=f"""
        test "${{MINDIE_VERSION}}" = {v}
        mkdir -p "${{CANN_HOME}}/atb-models" && {atb.fetch(arch=arch)} | tar -xz -C "${{CANN_HOME}}/atb-models"
        """)
    b.run(f"""
        {installer.fetch("/tmp/mindie.run", arch="$(uname -m)")}
        chmod +x /tmp/mindie.run && printf 'Y\\n' | /tmp/mindie.run --install --install-path="${{CANN_HOME}}" && rm -f /tmp/mindie.run
        chmod +w "${{CANN_HOME}}/mindie/latest/mindie-service/conf"  # the service writes its configuration
        mv {DAEMON} {DAEMON}_
        """, title=f"MindIE {v} from its installer")
    b.file(DAEMON, DAEMON_WRAPPER, 0o755)
    b.component(native("MindIE", v, [f"{DAEMON}_"]), python("mindie-llm", "", dist="mindie_llm"),
                python("atb-llm", ""), python("torch-npu", MINDIE_TORCH))
    return finish(b, t, PATH="/usr/local/Ascend/mindie/latest/mindie-service/bin:${PATH}", **NPU_ENV)


DAEMON = "/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon"
# the real daemon with CANN's, ATB's and MindIE's environment, logging to stdout, run from its service folder
DAEMON_WRAPPER = (HERE / "mindieservice_daemon.sh").read_text()


@shared
def sglang_npu_build(t: Target, parent: Stage, version: str) -> Stage:
    """sgl-kernel-npu with DeepEP, and the SGLang router, built as wheels for the service to install."""
    b = StageBuilder("sglang-build", "sgl-kernel-npu-build", parent)
    b.arg("SGLANG_VERSION", version, doc="SGLang release (its router)")
    b.arg("SGLANG_KERNEL_NPU_VERSION", pick(version, SGL_KERNEL_NPU), doc="sgl-kernel-npu tag")
    b.run(f"""
        {WITH_CACHES}
        {_build_env(b, t)}
        mkdir -p /workspace/sglang
        {github("sgl-project/sgl-kernel-npu", "${SGLANG_KERNEL_NPU_VERSION}").clone("/tmp/kernel")}
        unset ASCEND_HOME_PATH && cd /tmp/kernel && ./build.sh
        mv /tmp/kernel/output/deep_ep*.whl /tmp/kernel/output/sgl_kernel_npu*.whl /workspace/sglang/
        {rust_toolchain()}
        {github("sgl-project/sglang", "v${SGLANG_VERSION}").clone("/tmp/sglang")}{sglang_router()}
        rm -rf /tmp/kernel /tmp/sglang /root/.cargo /root/.rustup
        """, caches=caches(t, parent.platform, "uv", "ccache"), title="build sgl-kernel-npu (with DeepEP) and the SGLang router")
    return b.build()


def sglang(t: Target, runtime: Stage) -> Stage:
    p, v = runtime.platform, t.service_version
    torch = pick(v, SGLANG_TORCH, "torch")
    with_torch = npu_torch(t, runtime, torch, torch)
    b = service_builder(t, with_torch)
    cpu = (CPU_INDEX,) if p == "linux/amd64" else ()
    deps = ("attrs==25.4.0", "decorator==5.2.1", "psutil==7.1.3", "pyyaml==6.0.3", "memfabric-hybrid==1.0.0",
            "triton-ascend==3.2.0")
    vllm_reqs = Requirements((pkg("vllm", built="/tmp/vllm", resolve_as=f"vllm=={SGLANG_VLLM}",
                                  without=("torch", "torchvision", "torchaudio", "xformers", "flashinfer-python", "triton")),
                              *(pkg(d) for d in deps)), extra_index_urls=(*cpu, ASCEND_INDEX), prereleases=OTEL_BETAS,
                             constraints=torch_held(torch), title=f"vLLM {SGLANG_VLLM} (device empty), which SGLang's NPU backend imports")
    install(b, t, vllm_reqs, tools=("uv", "ccache"), before=f"""
        {_build_env(b, t)}
        {github("vllm-project/vllm", f"v{SGLANG_VLLM}").clone("/tmp/vllm")}
        sed -i 's/"torch ==[^"]*"/"torch"/' /tmp/vllm/pyproject.toml && export VLLM_TARGET_DEVICE=empty""", after="rm -rf /tmp/vllm")
    reqs = Requirements((pkg("sglang", extras=("srt_npu",), built='"/tmp/sglang/python[srt_npu]"', resolve_as=f"sglang=={v}",
                             without=("torch", "torchaudio", "torchvision", "sgl-kernel", "flashinfer-python")),),
                        extra_index_urls=(*cpu, ASCEND_INDEX), prereleases=OTEL_BETAS, upgrade=SGLANG_OVER_VLLM_NPU,
                        supersedes=tuple(("vllm", n) for n in SGLANG_OVER_VLLM_NPU), constraints=torch_held(torch),
                        title=f"SGLang {v} with its NPU extras (its project file), over vLLM's pins")
    install(b, t, reqs, before=f"""
        {github("sgl-project/sglang", "v${SGLANG_VERSION}").clone("/tmp/sglang")}
        if [[ -f /tmp/sglang/python/pyproject_other.toml ]]; then mv /tmp/sglang/python/pyproject_other.toml /tmp/sglang/python/pyproject.toml; fi""",
            after="rm -rf /tmp/sglang")
    kernels = Requirements((pkg("deep-ep", built="/mnt/sglang/deep_ep*.whl"),
                            pkg("sgl-kernel-npu", built="/mnt/sglang/sgl_kernel_npu*.whl"),
                            pkg("sglang-router", built="/mnt/sglang/sglang_router*.whl")),
                           reinstall=("sglang-router",), constraints=torch_held(torch),
                           title="sgl-kernel-npu (with DeepEP) and the SGLang router")
    install(b, t, kernels, mounts=[Mount(sglang_npu_build(t, with_torch, v), "/workspace/sglang", "/mnt/sglang")],
            after='cd "$(python3 -m pip show deep-ep | sed -n \'s/^Location: //p\')" && ln -sf deep_ep/deep_ep_cpp*.so .')
    extras = Requirements((pkg("librosa"), pkg("soundfile"), pkg("mistral_common[audio]"),
                           pkg("custom-ops", built=word(CUSTOM_OPS.href(variant=t.variant, arch="$(uname -m)")))),
                          constraints=torch_held(torch), title="audio extras and Ascend custom ops")
    install(b, t, extras, before="export UV_SKIP_WHEEL_FILENAME_CHECK=1")
    b.component(python("sglang", v, imports=()), python("sgl-kernel-npu", "", dist="sgl_kernel_npu"),
                python("deep-ep", "", dist="deep-ep"), python("sglang-router", ""), python("triton-ascend", "3.2.0"),
                python("custom-ops", CUSTOM_OPS.version))
    if p == "linux/arm64":
        b.run(f"""
            {BISHENG.fetch("/tmp/bisheng.run")} && chmod +x /tmp/bisheng.run
            printf 'Y\\n' | /tmp/bisheng.run --install && rm -f /tmp/bisheng.run
            """, title=f"the BiSheng compiler {BISHENG.version} triton-ascend needs")
        b.component(native("BiSheng toolkit", BISHENG.version, [f"{BISHENG_PATH}/*"]))
    return finish(b, t, PATH=f"{BISHENG_PATH}:${{PATH}}", **NPU_ENV, SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN="1",
                  SGLANG_MOE_PADDING="1", SGLANG_SET_CPU_AFFINITY="1")
