"""Device profiles: how a host with a backend's accelerator runs the images, and the `docker run`
lines a person would type to start an image as GPUStack starts it.

pack/<backend>/profile.yaml states devices, mounts, variables, runtime, shared memory and
capabilities; pack/_consumer/runtime-profiles.json records what gpustack-runtime (the consumer's
deployer) decides for the same backend, and every field where the two differ names its reason in the
profile's `gpustack:` block (consumer_differences checks both ways)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runner.model.errors import UserError
from runner.model.marked_yaml import load_model
from runner.model.targets import Target

COMPARED = ("runtime", "visible_devices", "runtime_env", "devices", "volumes", "env", "shm_size_gib", "privileged",
            "capabilities")


def device_paths(devices: list[str]) -> list[str]:
    """Device paths a `docker run` line may carry, checked."""
    for dev in devices:  # `{index}` is the one placeholder: it is replaced, never str.format'ted
        if not re.fullmatch(r"/dev/[A-Za-z0-9_./:-]*(\{index\}[A-Za-z0-9_./:-]*)?", dev) or "/../" in dev:
            raise ValueError(f"malformed device path {dev!r} (allowed: a path under /dev/ of letters, digits "
                             "and . _ - : /, with at most one {index})")
    return devices


class VariantProfile(BaseModel):
    """What a chip variant's hosts add to the backend's profile (the Ascend 950's fabric device nodes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[str] = Field(default_factory=list, description="device nodes only this variant's hosts have")
    volumes: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    why: str = Field(description="why the variant's hosts differ")

    @field_validator("devices")
    @classmethod
    def _device_paths(cls, devices: list[str]) -> list[str]:
        return device_paths(devices)


class DeviceProfile(BaseModel):
    """pack/<backend>/profile.yaml. `{index}` in a device path is replaced per visible device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str = Field(description="container runtime name, e.g. nvidia or runc")
    visible_devices: list[str] = Field(description="variables that select devices inside the container")
    runtime_env: str = Field(description="variable the container runtime or deployer reads")
    devices: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="further variables a container with the devices gets")
    shm_size_gib: int = Field(10, ge=1)
    privileged: bool = True
    capabilities: list[str] = Field(default_factory=list)
    device_check: str = Field(description="a tiny check that the accelerator is usable in the image")
    gpustack: dict[str, str] = Field(default_factory=dict,
                                     description="field -> why it differs from gpustack-runtime's own profile")
    variants: dict[str, VariantProfile] = Field(default_factory=dict, description="chip variant -> what its hosts add")

    def for_variant(self, variant: str) -> DeviceProfile:
        """The profile a host of this chip variant runs the image with (the backend's, plus the variant's)."""
        extra = self.variants.get(variant)
        if extra is None:
            return self
        return self.model_copy(update={"devices": [*self.devices, *extra.devices], "volumes": [*self.volumes, *extra.volumes],
                                       "env": {**self.env, **extra.env}})

    def device_env(self, devices: list[int] | None = None) -> dict[str, str]:
        """The device variables of a container exposing `devices` (default: device 0): the runtime's
        variable names them on the host; a privileged container sees every device of the host, so the
        backend's variables keep host indices (a container without privileges numbers them from 0).
        One value per variable, the backend's where both name the same one (MetaX)."""
        indices = [str(i) for i in (devices if devices is not None else [0])]
        inside = indices if self.privileged else [str(i) for i in range(len(indices))]
        env = {self.runtime_env: ",".join(indices)}
        env.update({v: ",".join(inside) for v in self.visible_devices})
        env.update(self.env)
        return env

    @field_validator("devices")
    @classmethod
    def _device_paths(cls, devices: list[str]) -> list[str]:
        return device_paths(devices)


def load_profile(pack: Path, backend: str, variant: str = "") -> DeviceProfile:
    """A backend's device profile; with a chip variant, as that variant's hosts run it."""
    path = pack / backend / "profile.yaml"
    if not path.is_file():
        raise UserError(f"backend {backend!r} has no device profile", value=str(path))
    return load_model(path, DeviceProfile).for_variant(variant)


def load_runtime_profiles(pack: Path) -> dict:
    """gpustack-runtime's own profiles, as `runner consumer` recorded them."""
    from runner.model.files import read_text

    path = pack / "_consumer" / "runtime-profiles.json"
    try:
        return json.loads(read_text(path, "gpustack-runtime's profiles"))
    except ValueError:
        raise UserError(f"{path}: not JSON", hint="regenerate it with `runner consumer --write`") from None


def runtime_view(runtime: dict, backend: str) -> dict:
    """gpustack-runtime's profile of a backend in this module's terms (see harness/device_profiles.py)."""
    found = runtime["backends"][backend]
    keys, docker, cdi = found["keys"], found["docker"], found["cdi"] or {}
    visible = {keys["runtime_env"], *keys["backend_env"]}
    requested = docker["requested"].split(",")[0]  # a device's nodes carry its index: make them templates
    per_device = [n.replace(requested, "{index}") if n.endswith(requested) else n for n in cdi.get("device_2", [])]
    return {
        "runtime": keys.get("runtime_class") or "runc",
        "visible_devices": sorted(keys["backend_env"]),
        "runtime_env": keys["runtime_env"],
        "devices": sorted(cdi.get("device_nodes", []) + per_device),
        "volumes": sorted(cdi.get("mounts", [])),
        "env": {k: v for k, v in docker["env"].items() if k not in visible},
        "shm_size_gib": int(runtime["gpustack_shm_size_gib"]),
        "privileged": docker["privileged"],
        "capabilities": sorted(docker["cap_add"] or []),
    }


def ours_view(profile: DeviceProfile) -> dict:
    return {
        "runtime": profile.runtime, "visible_devices": sorted(profile.visible_devices), "runtime_env": profile.runtime_env,
        "devices": sorted(profile.devices), "volumes": sorted(v.split(":")[0] for v in profile.volumes),
        "env": dict(profile.env), "shm_size_gib": profile.shm_size_gib, "privileged": profile.privileged,
        "capabilities": sorted(profile.capabilities),
    }


def consumer_differences(profile: DeviceProfile, runtime: dict, backend: str) -> tuple[dict, list[str]]:
    """Fields where the profile differs from gpustack-runtime's (field -> (ours, theirs)), and the
    problems: a difference with no reason in the profile's `gpustack:` block, a reason for a field that
    does not differ."""
    ours, theirs = ours_view(profile), runtime_view(runtime, backend)
    differ = {f: (ours[f], theirs[f]) for f in COMPARED if ours[f] != theirs[f]}
    problems = [f"{backend}: {f} is {a!r} here, {b!r} in gpustack-runtime, and the profile says not why"
                for f, (a, b) in differ.items() if f not in profile.gpustack]
    problems += [f"{backend}: the profile explains a difference in {f}, but there is none (or no such field)"
                 for f in profile.gpustack if f not in differ]
    return differ, problems


def run_command(profile: DeviceProfile, image: str, command: list[str], devices: list[int] | None = None,
                env: dict[str, str] | None = None, entrypoint: str | None = None, volumes: list[str] = ()) -> list[str]:
    """docker run argv for a host that has the accelerator (devices: host indices to expose): the
    profile's devices, mounts and runtime, `env` (its device variables replaced by this host's), and
    the entrypoint replaced where one is given."""
    indices = devices if devices is not None else [0]
    argv = ["docker", "run", "--rm", "-it", "--network", "host", f"--shm-size={profile.shm_size_gib}g"]
    if profile.runtime != "runc":
        argv.append(f"--runtime={profile.runtime}")
    if profile.privileged:
        argv.append("--privileged")
    argv += [f"--cap-add={c}" for c in profile.capabilities]
    for dev in profile.devices:
        argv += [f"--device={dev.replace('{index}', str(i))}" for i in indices] if "{index}" in dev else [f"--device={dev}"]
    argv += [f"--volume={v}" for v in [*profile.volumes, *volumes]]
    device_vars = profile.device_env(indices)
    merged = {k: v for k, v in (env or {}).items() if k not in device_vars and k not in profile.visible_devices}
    merged.update(device_vars)
    argv += [f"--env={k}={v}" for k, v in merged.items()]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    return argv + [image, *command]


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def started_lines(pack: Path, t: Target, image: str, deployment: str, devices: list[int] | None = None,
                  addresses: dict[str, str] | None = None, files_dir: Path | None = None) -> list[str]:
    """The docker run lines of a recorded GPUStack deployment of the target, one per container, with the
    worker addresses GPUStack filled in replaced as `addresses` says (recorded -> yours)."""
    from runner.verify.consumer import started_for

    found = dict(started_for(pack, t))
    if deployment not in found:
        raise UserError(f"no recorded GPUStack deployment of {t.tag} by that name", value=deployment,
                        allowed=sorted(found) or "none: run `runner consumer --write`")
    started = found[deployment]
    if started.error:
        raise UserError(f"GPUStack cannot start {deployment} on {t.tag}: {started.error}")
    profile = load_profile(pack, t.backend, t.variant)
    lines = []
    for c in started.containers:
        text = json.dumps([c.entrypoint, c.command, c.env])
        for recorded, yours in (addresses or {}).items():
            text = text.replace(recorded, yours)
        entrypoint, command, env = json.loads(text)
        volumes = [f"{m['source']}:{m['target']}" + (":ro" if m["read_only"] else "") for m in c.mounts]
        for path, f in c.files.items():  # what GPUStack writes into the container before it starts it
            if files_dir is None:
                raise UserError(f"GPUStack writes {len(c.files)} files into this container before it starts",
                                value=sorted(c.files), hint="pass --files DIR to write them there and mount them")
            local = files_dir / path.lstrip("/").replace("/", "__")
            local.write_text(f["content"])
            local.chmod(int(f["mode"], 8))
            volumes.append(f"{local.resolve()}:{path}:ro")
        args = (entrypoint or [])[1:] + (command or []) if entrypoint else (command or [])
        argv = run_command(profile, image, args, devices, env, entrypoint[0] if entrypoint else None, volumes)
        if c.working_dir:
            argv[argv.index(image):argv.index(image)] = ["--workdir", c.working_dir]
        lines.append(shell_line(argv))
    return lines
