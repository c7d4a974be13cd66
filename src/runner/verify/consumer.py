"""The consumer contract of seed 002: how GPUStack starts our images, as command lines per vLLM
version, backend and deployment.

GPUStack runs `vllm serve <model> ... --host --port --served-model-name` (through tini), adds flags
gated on the vLLM version and on the deployment (distributed over Ray, data-parallel with the Ray
backend, speculative decoding, the LMCache KV connector on NVIDIA and AMD, eager float16 on Ascend
310P, omni models), and for distributed serving starts Ray head and worker nodes in the same image.
Smoke tests hand each of these command lines to the image's own parsers (runner.verify.probes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from packaging.version import Version

# flag -> first vLLM version GPUStack passes it to
VLLM_GATED_FLAGS = {
    "--enable-prompt-tokens-details": "0.9.0.1",
    "--disable-access-log-for-endpoints": "0.16.0",
}
DATA_PARALLEL_RAY = "0.9.1"  # the first vLLM with --data-parallel-backend ray (older: no such deployment)
KV_CONNECTOR = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
KV_BACKENDS = ("cuda", "rocm")  # the manufacturers GPUStack enables extended KV cache on
OMNI_COMPONENT = "vllm-omni"
RAY_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--runtime-env-agent-port",
                  "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--metrics-export-port",
                  "--min-worker-port", "--max-worker-port", "--node-ip-address")


@dataclass(frozen=True)
class Case:
    """One command line the consumer runs, what the parser must read back, and what it must load."""

    name: str
    argv: tuple[str, ...]
    imports: tuple[str, ...] = ()
    expect: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "argv": list(self.argv), "imports": list(self.imports), "expect": self.expect}


def _at_least(version: str, floor: str) -> bool:
    return Version(version) >= Version(floor)


def vllm_serve_command(version: str, model: str = "/models/m", name: str = "m", host: str = "127.0.0.1",
                       port: int = 8000, distributed: bool = False, extra: tuple[str, ...] = (),
                       max_model_len: bool = True) -> list[str]:
    """The `vllm serve` argv GPUStack builds for a vLLM version (seed 002), with deployment flags."""
    args = ["vllm", "serve", model]
    if max_model_len:
        args += ["--max-model-len", "8192"]
    if distributed:
        args += ["--tensor-parallel-size", "2", "--pipeline-parallel-size", "2"]
    if _at_least(version, VLLM_GATED_FLAGS["--disable-access-log-for-endpoints"]):
        args += ["--disable-access-log-for-endpoints", "/metrics"]
    if _at_least(version, VLLM_GATED_FLAGS["--enable-prompt-tokens-details"]):
        args += ["--enable-prompt-tokens-details"]
    if distributed:
        args += ["--distributed-executor-backend", "ray"]
    return args + list(extra) + ["--host", host, "--port", str(port), "--served-model-name", name]


def vllm_cases(version: str, backend: str, variant: str = "", components: frozenset[str] = frozenset()) -> list[Case]:
    """Every `vllm serve` line the consumer can run on this image, one case per deployment."""
    serve = lambda **kw: tuple(vllm_serve_command(version, host="0.0.0.0", **kw)[1:])  # noqa: E731
    cases = [
        Case("single", serve(), expect={"port": 8000, "max_model_len": 8192}),
        Case("multi-gpu", serve(extra=("--tensor-parallel-size", "2")), expect={"tensor_parallel_size": 2}),
        Case("distributed", serve(distributed=True), expect={"distributed_executor_backend": "ray"}),
        Case("speculative", serve(extra=("--speculative-config", json.dumps(
            {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2})))),
        Case("speculative-draft", serve(extra=("--speculative-config", json.dumps(
            {"method": "eagle3", "num_speculative_tokens": 3, "model": "/models/draft"})))),
    ]
    if _at_least(version, DATA_PARALLEL_RAY):
        cases.append(Case("data-parallel", serve(extra=("--data-parallel-size", "2", "--data-parallel-backend", "ray",
                                                        "--data-parallel-rpc-port", "40001")),
                          expect={"data_parallel_backend": "ray", "data_parallel_rpc_port": 40001}))
    if backend in KV_BACKENDS:
        cases.append(Case("kv-transfer", serve(extra=("--kv-transfer-config", json.dumps(KV_CONNECTOR, separators=(",", ":")))),
                          imports=(f"kv:{KV_CONNECTOR['kv_connector']}", "lmcache.integration.vllm.vllm_v1_adapter")))
    if backend == "cann" and variant == "310p":
        cases.append(Case("310p", serve(extra=("--enforce-eager", "--dtype", "float16")),
                          expect={"enforce_eager": True, "dtype": "float16"}))
    if OMNI_COMPONENT in components:
        cases.append(Case("omni", serve(extra=("--omni",), max_model_len=False),
                          imports=("vllm_omni", "script:vllm=vllm_omni")))
    return cases


def ray_start_command(head: bool, base_port: int = 40000, ip: str = "127.0.0.1",
                      head_port: int | None = None) -> list[str]:
    """`ray start` as GPUStack runs it for a distributed leader (head) or follower (seed 002); ports
    come from a range starting at base_port, the follower joins the leader's GCS port."""
    ports = {f: str(base_port + 3 + i) for i, f in enumerate(RAY_PORT_FLAGS[:-3])}
    args = ["ray", "start", "--block", "--disable-usage-stats", "--verbose"]
    args += [f"{f}={p}" for f, p in ports.items()]
    args += [f"--min-worker-port={base_port + 10}", f"--max-worker-port={base_port + 100}", f"--node-ip-address={ip}"]
    if head:
        args += ["--head", f"--port={base_port}", f"--dashboard-host={ip}", f"--dashboard-port={base_port + 2}"]
    else:
        args += [f"--address={ip}:{head_port or base_port}"]
    return args


def ray_cases() -> list[Case]:
    return [Case("head", tuple(ray_start_command(True))), Case("worker", tuple(ray_start_command(False)))]


def flags_of(argv: list[str]) -> list[str]:
    """The option names in an argv (`--port=1` and `--port 1` both give --port)."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def vllm_flags(version: str, backend: str = "cuda", variant: str = "", components: frozenset[str] = frozenset()) -> list[str]:
    """Every flag GPUStack may pass to this vLLM version on this backend, over all deployments."""
    return sorted({f for c in vllm_cases(version, backend, variant, components) for f in flags_of(list(c.argv))})


def ray_flags() -> list[str]:
    return sorted(set(flags_of(ray_start_command(True)) + flags_of(ray_start_command(False))))
