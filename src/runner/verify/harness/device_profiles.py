# How gpustack-runtime runs a container on a host with each backend's accelerator (the workloads
# harness answers with it when asked for "profiles"; this module is imported beside it).
#
# For each backend, on a host with four fabricated devices of its manufacturer, what gpustack-runtime
# itself decides:
#   docker:   the create options its Docker deployer gives a privileged container (as GPUStack asks
#             for every service container) that requests devices 2 and 3 with the default (Env)
#             injection: environment, privileged, runtime, capabilities, devices, shared memory;
#   cdi:      the device nodes, mounts and environment its CDI generator writes for the manufacturer
#             (the alternative CDI injection; none where the vendor's own toolkit writes them);
#   keys:     its resource key, runtime and backend visible-devices variables, CDI kind and the
#             Kubernetes runtime class it names;
# and the shared memory GPUStack asks for by default.
# Stood in for: the Docker daemon (a recording client), device detection and the /dev and driver
# paths the CDI generators look for (every path they ask about is taken to exist).
import json
from pathlib import Path

from gpustack_runtime import envs
from gpustack_runtime.deployer import (
    Container, ContainerExecution, ContainerProfileEnum, ContainerResources, WorkloadPlan,
)
from gpustack_runtime.deployer import cdi
from gpustack_runtime.deployer.cdi import __utils__ as cdi_utils
from gpustack_runtime.deployer.docker import DockerWorkloadPlan

from fakes import MANUFACTURERS, detected_devices, docker_create  # beside this file

REQUESTED = "2,3"


def present(path):
    """Every device path the generators ask about exists: a character device, numbered after its name."""
    digits = "".join(ch for ch in str(path) if ch.isdigit())
    return cdi_utils.LinuxDevice(path=str(path), type="c", major=240, minor=int(digits or 0), file_mode=0o666, uid=0, gid=0)


class _Present(type(Path())):
    """Every file or folder the generators ask about exists."""

    def exists(self, *args, **kwargs):
        return True


def cdi_profile(manufacturer, detected):
    from gpustack_runtime.detector import ManufacturerEnum

    cdi_utils.linux_device_from_path = present
    cdi_utils.Path = _Present
    generator = cdi._GENERATORS_MAP.get(ManufacturerEnum(manufacturer))
    config = generator.generate(devices=detected) if generator else None
    if not config:
        return None  # the vendor's own container toolkit writes them
    data = json.loads(config.stringify("json"))
    edits = data.get("containerEdits", {})
    return {
        "kind": data.get("kind"),
        "env": edits.get("env", []),
        "device_nodes": [_node(n) for n in edits.get("deviceNodes", [])],
        "device_2": [_node(n) for d in data.get("devices", []) if d["name"] == "2"
                     for n in d.get("containerEdits", {}).get("deviceNodes", [])],
        "mounts": [m.get("hostPath") for m in edits.get("mounts", [])],
    }


def _node(node):
    """A device node as `host path` or `host path:container path` (gpustack-runtime writes the path it
    found on the host as `path`, and the one the container sees, where it differs, as `hostPath`)."""
    return node["path"] + (f":{node['hostPath']}" if node.get("hostPath") else "")


def docker_profile(key, detected):
    container = Container(image="runner-profile", name="default", profile=ContainerProfileEnum.RUN,
                          execution=ContainerExecution(privileged=True, command=["true"]),
                          resources=ContainerResources(**{key: REQUESTED}))
    plan = DockerWorkloadPlan(**WorkloadPlan(name="profile", host_network=True, shm_size=10 << 30,
                                             containers=[container]).__dict__)
    made = docker_create(plan, detected).run_containers()[0]
    return {
        "requested": REQUESTED,
        "env": dict(sorted(made.get("environment", {}).items())),
        "privileged": bool(made.get("privileged")),
        "runtime": made.get("runtime"),
        "cap_add": made.get("cap_add"),
        "devices": made.get("devices"),
        "device_requests": [str(r) for r in made.get("device_requests") or []],
        "shm_size": made.get("shm_size"),
    }


def profiles(backends):
    from importlib.metadata import version

    from gpustack.worker.backends.base import InferenceServer

    shm_gib = InferenceServer._get_container_env_config({}).shm_size_gib
    answer = {"gpustack_runtime": version("gpustack-runtime"), "gpustack_shm_size_gib": shm_gib, "backends": {}}
    for backend in backends:
        manufacturer = MANUFACTURERS[backend]
        key = envs.GPUSTACK_RUNTIME_DETECT_BACKEND_MAP_RESOURCE_KEY[backend]
        cdi_kind = envs.GPUSTACK_RUNTIME_DEPLOY_RESOURCE_KEY_MAP_CDI.get(key)
        detected = detected_devices(manufacturer, f"{manufacturer} device", "1.0", arch_family=None)
        answer["backends"][backend] = {
            "keys": {
                "resource_key": key,
                "runtime_env": envs.GPUSTACK_RUNTIME_DEPLOY_RESOURCE_KEY_MAP_RUNTIME_VISIBLE_DEVICES.get(key),
                "backend_env": envs.GPUSTACK_RUNTIME_DEPLOY_RESOURCE_KEY_MAP_BACKEND_VISIBLE_DEVICES.get(key),
                "cdi_kind": cdi_kind,
                "runtime_class": envs.GPUSTACK_RUNTIME_DEPLOY_RESOURCE_KEY_MAP_RUNTIME_CLASS.get(cdi_kind),
            },
            "docker": docker_profile(key, detected),
            "cdi": cdi_profile(manufacturer, detected),
        }
    return answer
