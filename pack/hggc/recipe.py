"""T-Head HGGC: per-service vendor images ship torch and the service; link HGGC_HOME, set environment."""

from runner.compose.kit import prebuilt_runtime, prebuilt_service
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang")
ENV = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1", "MACA_SMALL_PAGESIZE_ENABLE": "1", "VLLM_USE_V1": "0"}


def runtime(t: Target, base: Stage) -> Stage:
    return prebuilt_runtime(t, base, home="/usr/local/PPU_SDK", vendor_home="/usr/local/PPU_SDK-" + t.original_backend_version)


def service(t: Target, runtime: Stage) -> Stage:
    return prebuilt_service(t, runtime, torch="2.8.0", **ENV)
