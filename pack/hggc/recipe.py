"""T-Head HGGC: per-service vendor images ship torch and the service; the shared runtime goes on them,
HGGC_HOME and HGGC_PATH name the PPU SDK."""

from runner.compose.kit import finish, pick, runtime_builder, vendor_service
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang")
LEFT_OUT = ()
TORCH = {"vllm": {">=0.19": "2.10.0", ">=0.11": "2.8.0"}, "sglang": {">=0.5.12": "2.10.0", ">=0.5.9": "2.9.0", ">=0.5": "2.8.0"}}
VLLM_ENV = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1", "MACA_SMALL_PAGESIZE_ENABLE": "1", "VLLM_USE_V1": "0"}
SGLANG_ENV = {"SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1", "SGLANG_MOE_PADDING": "1", "SGLANG_SET_CPU_AFFINITY": "1"}


def runtime(t: Target, base: Stage) -> Stage:
    return runtime_builder(t, base, home="/usr/local/PPU_SDK").env(HGGC_PATH="/usr/local/PPU_SDK").build()


def service(t: Target, runtime: Stage) -> Stage:
    return finish(vendor_service(t, runtime, torch=pick(t.service_version, TORCH[t.service], "torch")), t, **(VLLM_ENV if t.service == "vllm" else SGLANG_ENV))
