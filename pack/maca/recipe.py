"""MetaX MACA: vendor images ship torch and the service; link MACA_HOME and set the environment."""

from runner.compose.kit import pick, prebuilt_runtime, prebuilt_service
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang")
TORCH = {"vllm": {">=0.11": "2.8.0", ">=0.9": "2.6.0"}, "sglang": {">=0.5": "2.6.0"}}
ENV = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1", "MACA_SMALL_PAGESIZE_ENABLE": "1", "VLLM_USE_V1": "0"}


def runtime(t: Target, base: Stage) -> Stage:
    return prebuilt_runtime(t, base, home="/opt/maca", vendor_home="/opt/maca-" + t.original_backend_version)


def service(t: Target, runtime: Stage) -> Stage:
    return prebuilt_service(t, runtime, torch=pick(t.service_version, TORCH[t.service], "torch"), **ENV)
