"""Device profiles: how a host with a backend's accelerator runs the images (seed 003's sandboxes),
and the `docker run` command line a person would type for a target."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runner.model.errors import UserError
from runner.model.targets import Target
from runner.model.marked_yaml import load_model


class DeviceProfile(BaseModel):
    """pack/<backend>/profile.yaml. `{index}` in a device path is replaced per visible device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str = Field(description="container runtime name, e.g. nvidia or runc")
    visible_devices: list[str] = Field(description="variables that select devices inside the container")
    runtime_env: str = Field(description="variable the container runtime or deployer reads")
    devices: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    shm_size_gib: int = Field(16, ge=1)
    privileged: bool = True
    capabilities: list[str] = Field(default_factory=list)
    device_check: str = Field(description="a tiny check that the accelerator is usable in the image")

    @field_validator("devices")
    @classmethod
    def _device_paths(cls, devices: list[str]) -> list[str]:
        for dev in devices:  # `{index}` is the one placeholder: it is replaced, never str.format'ted
            if not re.fullmatch(r"/dev/[A-Za-z0-9_./:-]*(\{index\}[A-Za-z0-9_./:-]*)?", dev) or "/../" in dev:
                raise ValueError(f"malformed device path {dev!r} (allowed: a path under /dev/ of letters, digits "
                                 "and . _ - : /, with at most one {index})")
        return devices


def load_profile(pack: Path, backend: str) -> DeviceProfile:
    path = pack / backend / "profile.yaml"
    if not path.is_file():
        raise UserError(f"backend {backend!r} has no device profile", value=str(path))
    return load_model(path, DeviceProfile)


def serve_command(t: Target, model: str = "/models/m", name: str = "m", port: int = 8000) -> list[str]:
    """What GPUStack runs in the image for the target's service."""
    from runner.verify.consumer import vllm_serve_command

    if t.service == "vllm":
        return vllm_serve_command(t.service_version, model, name, "0.0.0.0", port)
    if t.service == "sglang":
        return ["python3", "-m", "sglang.launch_server", "--model-path", model, "--served-model-name", name,
                "--host", "0.0.0.0", "--port", str(port)]
    if t.service == "mindie":
        return ["mindieservice_daemon"]
    if t.service == "voxbox":
        return ["vox-box", "start", "--model", model, "--host", "0.0.0.0", "--port", str(port)]
    return [t.service, "--version"]


def run_command(profile: DeviceProfile, image: str, command: list[str], devices: list[int] | None = None) -> list[str]:
    """docker run argv for a host that has the accelerator (devices: indices to expose)."""
    indices = devices if devices is not None else [0]
    argv = ["docker", "run", "--rm", "-it", "--network", "host", "--ipc", "host", f"--shm-size={profile.shm_size_gib}g"]
    if profile.runtime != "runc":
        argv.append(f"--runtime={profile.runtime}")
    if profile.privileged:
        argv.append("--privileged")
    argv += [f"--cap-add={c}" for c in profile.capabilities]
    for dev in profile.devices:
        argv += [f"--device={dev.replace('{index}', str(i))}" for i in indices] if "{index}" in dev else [f"--device={dev}"]
    argv += [f"--volume={v}" for v in profile.volumes]
    visible = ",".join(str(i) for i in indices)
    argv += [f"--env={profile.runtime_env}={visible}"]
    # inside the container the selected devices are renumbered from 0
    argv += [f"--env={v}={','.join(str(i) for i in range(len(indices)))}" for v in profile.visible_devices]
    return argv + [image, *command]


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
