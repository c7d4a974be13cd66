"""Iluvatar CoreX: the vendor image ships torch and vLLM; the shared runtime goes on it and COREX_HOME
is linked to the versioned install."""

from runner.compose.kit import finish, runtime_builder, vendor_service
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm",)
LEFT_OUT = ()


def runtime(t: Target, base: Stage) -> Stage:
    return runtime_builder(t, base, home="/usr/local/corex", vendor_home=f"/usr/local/corex-{t.original_backend_version}").build()


def service(t: Target, runtime: Stage) -> Stage:
    return finish(vendor_service(t, runtime, torch="2.4.1"), t)
