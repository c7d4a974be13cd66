"""Hygon DTK: the vendor image ships torch and vLLM (or SGLang, from 26.04); the shared runtime goes on it, DTK_HOME is linked
to the versioned install, and vLLM 0.11 and 0.18 get LMCache built with hipcc (with the toolkit fixes its
build needs: DTK's environment, the hyhal link, clang's library folder and hip's config version)."""

from runner.compose.components import python
from runner.compose.kit import OTEL_BETAS, max_jobs, finish, install, pick, pick_or, runtime_builder, vendor_service
from runner.compose.requirements import Requirements, pkg
from runner.compose.sources import github
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("vllm", "sglang")
LEFT_OUT = ()
TORCH = {"vllm": {">=0.18": "2.10.0", ">=0.9": "2.5.1", ">=0.8": "2.4.1"}, "sglang": {">=0.5.10": "2.9.0"}}
LMCACHE = {">=0.18": "0.5.0", ">=0.11": "0.3.11"}
SGLANG_ENV = {"SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1", "SGLANG_MOE_PADDING": "1", "SGLANG_SET_CPU_AFFINITY": "1"}
ENV = {"RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES": "1", "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES": "1",
       "TOKENIZERS_PARALLELISM": "false", "SAFETENSORS_FAST_GPU": "1"}


def runtime(t: Target, base: Stage) -> Stage:
    b = runtime_builder(t, base, home="/opt/dtk", vendor_home=f"/opt/dtk-{t.original_backend_version}")
    b.run('if [[ ! -e /opt/hyhal && -d /opt/dtk/.hyhal ]]; then ln -s /opt/dtk/.hyhal /opt/hyhal; fi',
          title="link hyhal, which DTK's libraries load from /opt/hyhal")
    return b.build()


def service(t: Target, runtime: Stage) -> Stage:
    b = vendor_service(t, runtime, torch=pick(t.service_version, TORCH[t.service], "torch"))
    if t.service == "sglang":
        return finish(b, t, **{k: v for k, v in ENV.items() if k.startswith("RAY_")}, **SGLANG_ENV)
    if (lmcache := pick_or(t.service_version, LMCACHE)):
        b.arg("DTK_ARCHS", ";".join(t.archs), doc="Hygon GPU targets LMCache is built for")
        reqs = Requirements((pkg("lmcache", built="/tmp/lmcache", resolve_as=f"lmcache=={lmcache}", without=("torch",)),),
                            installer="pip", no_build_isolation=True, title=f"LMCache {lmcache} built with hipcc",
                            prereleases=OTEL_BETAS)  # LMCache 0.4+ needs OpenTelemetry packages that only have betas
        install(b, t, reqs, tools=("pip", "ccache"), before=f"""
            {max_jobs(2)}
            export PYTORCH_ROCM_ARCH="${{DTK_ARCHS}}" TORCH_DONT_CHECK_COMPILER_ABI=1 CXX=hipcc BUILD_WITH_HIP=1
            rm -rf /opt/dtk/llvm/lib/clang/lib
            ln -s "/opt/dtk/llvm/lib/clang/$(clang --version | head -n 1 | awk '{{print $3}}')/lib" /opt/dtk/llvm/lib/clang/lib
            source /opt/dtk/env.sh
            sed -i 's/"5.1.25085"/"6.1.25085"/' /opt/dtk/hip/lib/cmake/hip/hip-config-version.cmake  # DTK 25.04 says 5.1
            {github("LMCache/LMCache", f"v{lmcache}").clone("/tmp/lmcache")}
            sed -i 's/"torch==[^"]*"/"torch"/' /tmp/lmcache/pyproject.toml  # keep the vendor's torch""",
                after="rm -rf /tmp/lmcache")
        b.component(python("lmcache", lmcache, imports=("lmcache",)))
    return finish(b, t, **ENV)
