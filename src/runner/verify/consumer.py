"""The consumer contract of seed 002: how GPUStack starts our images, as command lines per version.

GPUStack runs `vllm serve <model> --host --port --served-model-name` (through tini), adds flags gated
on the vLLM version, and for distributed serving starts Ray head and worker nodes in the same image.
Smoke tests check that the installed version accepts exactly these flags.
"""

from __future__ import annotations

from packaging.version import Version

# flag -> first vLLM version GPUStack passes it to
VLLM_GATED_FLAGS = {
    "--enable-prompt-tokens-details": "0.9.0.1",
    "--disable-access-log-for-endpoints": "0.16.0",
}
VLLM_DISTRIBUTED_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "--distributed-executor-backend")
RAY_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--runtime-env-agent-port",
                  "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--metrics-export-port",
                  "--min-worker-port", "--max-worker-port", "--node-ip-address")


def vllm_serve_command(version: str, model: str = "/models/m", name: str = "m", host: str = "127.0.0.1",
                       port: int = 8000, distributed: bool = False) -> list[str]:
    """The `vllm serve` argv GPUStack builds for a vLLM version (seed 002)."""
    args = ["vllm", "serve", model]
    v = Version(version)
    if v >= Version(VLLM_GATED_FLAGS["--disable-access-log-for-endpoints"]):
        args += ["--disable-access-log-for-endpoints", "/metrics"]
    if v >= Version(VLLM_GATED_FLAGS["--enable-prompt-tokens-details"]):
        args += ["--enable-prompt-tokens-details"]
    if distributed:
        args += ["--tensor-parallel-size", "2", "--pipeline-parallel-size", "1", "--distributed-executor-backend", "ray"]
    return args + ["--host", host, "--port", str(port), "--served-model-name", name]


def ray_start_command(head: bool, base_port: int = 40000, ip: str = "127.0.0.1") -> list[str]:
    """`ray start` as GPUStack runs it for a distributed leader (head) or follower (seed 002)."""
    ports = {f: str(base_port + 3 + i) for i, f in enumerate(RAY_PORT_FLAGS[:-3])}
    args = ["ray", "start", "--block", "--disable-usage-stats", "--verbose"]
    args += [f"{f}={p}" for f, p in ports.items()]
    args += [f"--min-worker-port={base_port + 10}", f"--max-worker-port={base_port + 100}", f"--node-ip-address={ip}"]
    if head:
        args += ["--head", f"--port={base_port}", f"--dashboard-host={ip}", f"--dashboard-port={base_port + 2}"]
    else:
        args += [f"--address={ip}:{base_port}"]
    return args


def flags_of(argv: list[str]) -> list[str]:
    """The option names in an argv (`--port=1` and `--port 1` both give --port)."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def vllm_flags(version: str) -> list[str]:
    """Every flag GPUStack may pass to this vLLM version, single-node and distributed."""
    return sorted(set(flags_of(vllm_serve_command(version, distributed=True))))


def ray_flags() -> list[str]:
    return sorted(set(flags_of(ray_start_command(True)) + flags_of(ray_start_command(False))))
