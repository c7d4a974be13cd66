"""Ascend CANN: runtime on the CANN image of the chip variant; vLLM (device "empty") plus vllm-ascend,
MindIE from its installer, SGLang with the NPU extras. All share the release's runtime."""

from pathlib import Path

from runner.compose.kit import WITH_CACHES, caches, finish, pick, runtime_builder, service_builder, torch_stage
from runner.compose.stages import Stage
from runner.model.targets import Target

SERVICES = ("mindie", "vllm", "sglang")
HERE = Path(__file__).parent

TORCH = {">=0.14": "2.9.0", ">=0.12": "2.8.0", ">=0.9": "2.7.1"}
VLLM_ASCEND = {">=0.14": "0.14.0rc1", ">=0.12": "", ">=0.11": "0.11.0rc3", ">=0.10.2": "0.10.2rc1",
               ">=0.10.1": "0.10.1rc1", ">=0.10": "0.10.0rc1", ">=0.9.2": "0.9.2rc1", ">=0.9": "0.9.1"}
SGLANG_TORCH = {">=0.5.6": "2.8.0", ">=0.5": "2.6.0"}
SGL_KERNEL_NPU = {">=0.5.8": "2026.01.28", ">=0.5.6": "2025.12.31", ">=0.5": "2025.09.15"}
NPU_ENV = {"TASK_QUEUE_ENABLE": "1", "CPU_AFFINITY_CONF": "1", "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
SET_ENV = ("source /usr/local/Ascend/ascend-toolkit/set_env.sh; "
           "[ -f /usr/local/Ascend/nnal/atb/set_env.sh ] && source /usr/local/Ascend/nnal/atb/set_env.sh; true")


def soc_version(t: Target) -> str:
    return {"a3": "ascend910_9391", "310p": "ascend310p1"}.get(t.variant, "ascend910b1")


def torch_index(platform: str) -> str:
    """CPU torch wheels on amd64 (the NPU does the work); arm64 wheels from the default index."""
    return "https://download.pytorch.org/whl/cpu" if platform == "linux/amd64" else ""


def runtime(t: Target, base: Stage) -> Stage:
    return (
        runtime_builder(t, base, extra_apt="libopenmpi-dev openmpi-bin clang-15", home="/usr/local/Ascend")
        .env(PATH="/usr/local/Ascend/driver/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             SOC_VERSION=soc_version(t))
        .build()
    )


def service(t: Target, runtime: Stage) -> Stage:
    return {"vllm": vllm, "mindie": mindie, "sglang": sglang}[t.service](t, runtime)


def _torch_npu(t: Target, runtime: Stage, torch: str) -> Stage:
    """torch and torch-npu of one release, shared by every service that needs that torch."""
    return torch_stage(t, runtime, torch, f"torch-npu=={torch}.*", index=torch_index(runtime.platform),
                       extra_index="https://mirrors.huaweicloud.com/ascend/repos/pypi")


def vllm(t: Target, runtime: Stage) -> Stage:
    p, torch = runtime.platform, pick(t.service_version, TORCH, "torch")
    ascend = pick(t.service_version, VLLM_ASCEND, "vllm-ascend")
    mooncake = "" if t.variant == "310p" else "'mooncake-transfer-engine==0.3.7.post2'"
    b = (
        service_builder(t, _torch_npu(t, runtime, torch))
        .arg("VLLM_TORCH_VERSION", torch, doc="torch and torch-npu release")
        .arg("VLLM_ASCEND_VERSION", ascend, required=False, doc="vllm-ascend tag; empty: newest for this vLLM")
        .run(f"""
            {WITH_CACHES}
            {SET_ENV}
            ascend="${{VLLM_ASCEND_VERSION}}"
            if [[ -z "$ascend" ]]; then
                ascend=$(curl -fsSL https://pypi.org/rss/project/vllm-ascend/releases.xml | grep -o "<title>${{VLLM_VERSION}}[^<]*" | head -1 | sed 's/<title>//')
            fi
            git clone --depth 1 --branch "v${{VLLM_VERSION}}" https://github.com/vllm-project/vllm.git /workspace/vllm
            VLLM_TARGET_DEVICE=empty uv pip install /workspace/vllm
            git clone --depth 1 --branch "v${{ascend}}" https://github.com/vllm-project/vllm-ascend.git /workspace/vllm-ascend
            SOC_VERSION={soc_version(t)} uv pip install /workspace/vllm-ascend
            uv pip install 'ray[client,default]>=2.47.1,<=2.48.0' 'grpcio==1.71.0' {mooncake}
            rm -rf /workspace/vllm /workspace/vllm-ascend
            """, caches=caches(t, p, "uv", "ccache"), title="vLLM (device empty) and vllm-ascend")
        .run("""
            real=$(command -v vllm); mv "$real" "${real}_"
            printf '#!/bin/bash\\n%s\\nexport LD_PRELOAD=/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2${LD_PRELOAD:+:$LD_PRELOAD}\\nexec %s_ "$@"\\n' \\
                "$SET_ENV_LINE" "$real" > "$real" && chmod +x "$real"
            """.replace("$SET_ENV_LINE", SET_ENV), title="vllm wrapper that sources the CANN environment")
    )
    return finish(b, t, VLLM_TORCH_VERSION=torch, **NPU_ENV, RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES="1")


def mindie(t: Target, runtime: Stage) -> Stage:
    p = runtime.platform
    arch = "aarch64" if p == "linux/arm64" else "x86_64"
    b = (
        service_builder(t, _torch_npu(t, runtime, "2.1.0"))
        .arg("MINDIE_TORCH_VERSION", "2.1.0", doc="torch MindIE is built against")
        .run(f"""
            {WITH_CACHES}
            {SET_ENV}
            cd /tmp
            curl -fsSL -H 'Referer: https://www.hiascend.com/' -o mindie.run \\
                "https://ascend-repo.obs.cn-east-2.myhuaweicloud.com/MindIE/MindIE%20${{MINDIE_VERSION}}/Ascend-mindie_${{MINDIE_VERSION}}_linux-{arch}_abi0.run"
            chmod +x mindie.run && ./mindie.run --install --quiet --install-path=/usr/local/Ascend && rm -f mindie.run
            mkdir -p /usr/local/Ascend/atb-models && tar -xzf /usr/local/Ascend/mindie/latest/mindie-llm/atb-models.tar.gz -C /usr/local/Ascend/atb-models
            uv pip install /usr/local/Ascend/atb-models/*.whl
            daemon=$(find /usr/local/Ascend/mindie -name mindieservice_daemon -type f | head -1)
            mv "$daemon" "${{daemon}}_"
            printf '#!/bin/bash\\nexec "%s_" "$@" 2>&1 | tee -a /var/log/mindieservice.log\\n' "$daemon" > "$daemon" && chmod +x "$daemon"
            ln -sf "$daemon" /usr/local/bin/mindieservice_daemon && ln -sf "${{daemon}}_" /usr/local/bin/mindieservice_daemon_
            """, caches=caches(t, p, "uv"), title="MindIE from its installer, ATB models, logging daemon wrapper")
    )
    return finish(b, t, MINDIE_TORCH_VERSION="2.1.0", **NPU_ENV)


def sglang(t: Target, runtime: Stage) -> Stage:
    p, torch = runtime.platform, pick(t.service_version, SGLANG_TORCH, "torch")
    b = (
        service_builder(t, _torch_npu(t, runtime, torch))
        .arg("SGLANG_TORCH_VERSION", torch, doc="torch and torch-npu release")
        .arg("SGLANG_KERNEL_NPU_VERSION", pick(t.service_version, SGL_KERNEL_NPU), doc="sgl-kernel-npu tag")
        .run(f"""
            {WITH_CACHES}
            {SET_ENV}
            git clone --depth 1 --branch v0.10.2 https://github.com/vllm-project/vllm.git /workspace/vllm
            VLLM_TARGET_DEVICE=empty uv pip install /workspace/vllm
            uv pip install 'triton-ascend==3.2.0' 'memfabric-hybrid==1.0.0' "sglang[srt_npu]==${{SGLANG_VERSION}}"
            git clone --depth 1 --branch "${{SGLANG_KERNEL_NPU_VERSION}}" https://github.com/sgl-project/sgl-kernel-npu.git /workspace/kernel
            cd /workspace/kernel && SOC_VERSION={soc_version(t)} bash build.sh && uv pip install output/*.whl
            rm -rf /workspace/vllm /workspace/kernel
            """, caches=caches(t, p, "uv", "ccache"), title="SGLang with the NPU extras and sgl-kernel-npu")
    )
    return finish(b, t, SGLANG_TORCH_VERSION=torch, **NPU_ENV)
