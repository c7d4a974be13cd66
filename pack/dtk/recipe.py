"""Hygon DTK: the vendor image ships torch and vLLM; link DTK_HOME, add LMCache built with hipcc."""

from runner.compose.kit import WITH_CACHES, caches, finish, pick, prebuilt_runtime, service_builder
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm",)
TORCH = {">=0.9": "2.5.1", ">=0.8": "2.4.1"}
LMCACHE = {">=0.11": "0.3.11"}


def runtime(t: Target, base: Stage) -> Stage:
    return prebuilt_runtime(t, base, home="/opt/dtk", vendor_home="/opt/dtk-" + t.original_backend_version)


def service(t: Target, runtime: Stage) -> Stage:
    torch = pick(t.service_version, TORCH, "torch")
    b = service_builder(t, runtime).arg("VLLM_TORCH_VERSION", torch, doc="torch the vendor image ships")
    try:
        lmcache = pick(t.service_version, LMCACHE)
    except LookupError:
        lmcache = ""
    if lmcache:
        b.run(f"""
            {WITH_CACHES}
            git clone --depth 1 --branch v{lmcache} https://github.com/LMCache/LMCache.git /workspace/lmcache
            cd /workspace/lmcache && CXX=hipcc BUILD_WITH_HIP=1 PYTORCH_ROCM_ARCH="{';'.join(t.archs)}" uv pip install --no-build-isolation .
            rm -rf /workspace/lmcache
            """, caches=caches(t, runtime.platform, "uv", "ccache"), title=f"LMCache {lmcache} built with hipcc")
    return finish(b, t, VLLM_TORCH_VERSION=torch, RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES="1",
                  RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES="1", TOKENIZERS_PARALLELISM="false",
                  SAFETENSORS_FAST_GPU="1")
