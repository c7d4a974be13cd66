"""Iluvatar CoreX: the vendor image ships torch and vLLM; link COREX_HOME and set the environment."""

from runner.compose.kit import prebuilt_runtime, prebuilt_service
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm",)


def runtime(t: Target, base: Stage) -> Stage:
    return prebuilt_runtime(t, base, home="/usr/local/corex", vendor_home="/usr/local/corex-" + t.original_backend_version)


def service(t: Target, runtime: Stage) -> Stage:
    return prebuilt_service(t, runtime, torch="2.4.1")
