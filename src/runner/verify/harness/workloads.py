# Harness: what GPUStack starts for each deployment, from GPUStack's own backend classes.
#
# Request (stdin): {"catalog": [catalog records], "cases": [{"key", "target", "service", "backend",
# "backend_version", "variant", "service_version", "device", "deployment"}], "profiles": [backends]}. Each case is one
# deployment of one matrix target: a worker (and its followers) with fabricated accelerators, a model
# and a model instance in the shape the deployment declares, our catalog as GPUStack's runner source.
# The backend class (VLLMServer, SGLangServer, AscendMindIEServer, VoxBoxServer) is constructed and
# started as GPUStack's worker does; its workload plan goes through gpustack-runtime's Docker deployer,
# and what the deployer would send to the Docker daemon for each container is the answer (stdout):
# {"gpustack": version, "runtime": version, "results": {key: {...} or {"error": text}}, "profiles": ...},
# with gpustack-runtime's own device profile of each backend asked for (device_profiles.py).
#
# Stood in for: the GPUStack server (a client set answering from the fabricated objects), the Docker
# daemon (a client recording container creations) and device detection (the fabricated devices).
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
WORKER_IP, FOLLOWER_IPS, IFNAME = "192.168.50.10", ["192.168.50.11", "192.168.50.12"], "eth0"
PORTS = [40000, 40001, 40002, 40003]  # what GPUStack's serve manager assigns: serving, DP RPC, master, spare
DATA_DIR = "/var/lib/gpustack"  # the worker's data folder, as the answer names it

os.environ.clear()
os.environ.update(WORKER_ENV)
os.environ["GPUSTACK_RUNTIME_DEPLOY_ASYNC"] = "false"

from gpustack_runtime import detector as runtime_detector  # noqa: E402
from gpustack_runtime.deployer.docker import DockerDeployer  # noqa: E402

from fakes import HOST_DEVICES, detected_devices, docker_create  # noqa: E402 - beside this file

from gpustack.config.config import Config  # noqa: E402
from gpustack.utils import platform as gpustack_platform  # noqa: E402
from gpustack.schemas.inference_backend import get_built_in_backend  # noqa: E402
from gpustack.schemas.models import (  # noqa: E402
    BackendEnum, ComputedResourceClaim, DistributedServers, ExtendedKVCacheConfig, LoraListEntry, Model,
    ModelInstance, ModelInstanceStateEnum, ModelInstanceSubordinateWorker, SpeculativeConfig,
)
from gpustack.schemas.workers import GPUDeviceStatus, Worker, WorkerStatus  # noqa: E402
from gpustack.server.bus import Event, EventType  # noqa: E402
from gpustack.worker.backends import ascend_mindie, sglang, vllm, vox_box  # noqa: E402

SERVERS = {"vllm": (vllm, vllm.VLLMServer, BackendEnum.VLLM), "sglang": (sglang, sglang.SGLangServer, BackendEnum.SGLANG),
           "mindie": (ascend_mindie, ascend_mindie.AscendMindIEServer, BackendEnum.ASCEND_MINDIE),
           "voxbox": (vox_box, vox_box.VoxBoxServer, BackendEnum.VOX_BOX)}


class Response:
    def __init__(self, data):
        self._data = data

    def raise_for_status(self):
        pass

    def json(self):
        return self._data


class ClientSet:
    """The GPUStack server as the worker's backend sees it: answers from the fabricated objects."""

    def __init__(self, workers, model, instance, catalog):
        self._workers, self._model, self._instance, self._catalog = workers, model, instance, catalog
        self.messages = []
        outer = self

        class Workers:
            def get(self, id, **kw):
                return outer._workers[id]

        class Models:
            def get(self, id, use_cache=True):
                return outer._model.model_copy(deep=True)

            def update(self, id, model_update):  # GPUStack writes the version it resolved back
                pass

        class Instances:
            def watch(self, callback=None, stop_condition=None, params=None):
                data = outer._instance.model_dump(mode="json")
                data["state"] = ModelInstanceStateEnum.STARTING
                stop_condition(Event(type=EventType.UPDATED, data=data))

            def get(self, id, use_cache=True):
                return outer._instance.model_copy(deep=True)

            def update(self, id, model_update):  # GPUStack reports its errors here
                if model_update.state_message:
                    outer.messages.append(model_update.state_message)

            def list(self, params=None):
                return [outer._instance]

        class Http:
            def get_httpx_client(self):
                return self

            def get(self, path, params=None):
                assert path == "/runner-override-entries", path
                rows = [{"id": i + 1, "created_at": None, "updated_at": None, **r} for i, r in enumerate(outer._catalog)]
                return Response({"items": rows, "pagination": {"page": 1, "perPage": len(rows), "total": len(rows),
                                                                "totalPage": 1}})

        self.workers, self.models, self.model_instances, self.http_client = Workers(), Models(), Instances(), Http()


def fabricated_devices(device):
    """The worker's accelerators as GPUStack reports them, and as gpustack-runtime detects them."""
    detected = detected_devices(device["vendor"], device["name"], device["runtime_version"],
                                device.get("arch_family"), device.get("compute_capability"))
    status = [GPUDeviceStatus(vendor=device["vendor"], type=device["type"], index=d.index, device_index=d.index,
                              arch_family=device.get("arch_family"), name=d.name, uuid=d.uuid,
                              runtime_version=d.runtime_version, compute_capability=d.compute_capability)
              for d in detected]
    return status, detected


def make_worker(worker_id, ip, status):
    return Worker(id=worker_id, name=f"worker-{worker_id}", ip=ip, ifname=IFNAME, hostname=f"worker-{worker_id}",
                  port=10150, labels={}, cluster_id=1,
                  status=WorkerStatus(**{**WorkerStatus.get_default_status().model_dump(), "gpu_devices": status}))


def model_folder(root, spec, name):
    """A model on disk with the config GPUStack reads (no download), and LoRA adapters beside it."""
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(spec.get("config") or {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_position_embeddings": 32768}))
    return str(path)


def build(case, root):
    d, t = case["deployment"], case
    status, detected = fabricated_devices(t["device"])
    followers = d.get("followers", [])
    workers = {1: make_worker(1, WORKER_IP, status)}
    for i, _ in enumerate(followers):
        workers[2 + i] = make_worker(2 + i, FOLLOWER_IPS[i], status)
    model_path = model_folder(root, d.get("model", {}), "model")
    spec = d.get("model", {})
    loras = [LoraListEntry(lora_name=f"m:{lora['name']}", source="local_path", local_path=f"{root}/{lora['name']}",
                           path=_lora(root, lora)) for lora in spec.get("loras", [])]
    service = t["service"]
    model = Model(
        id=1, name="m", source="local_path", local_path=model_path, backend=SERVERS[service][2],
        backend_version=t["service_version"], categories=spec.get("categories", []),
        backend_parameters=list(spec.get("backend_parameters", [])), env=spec.get("env"),
        extended_kv_cache=ExtendedKVCacheConfig(**spec["extended_kv_cache"]) if "extended_kv_cache" in spec else None,
        speculative_config=SpeculativeConfig(**spec["speculative"]) if "speculative" in spec else None,
        cluster_id=1, owner_principal_id=1,
    )
    gpus = list(range(d.get("gpus", 1)))
    vram = {i: 40 << 30 for i in gpus}
    subordinates = [ModelInstanceSubordinateWorker(
        worker_id=2 + i, worker_name=f"worker-{2 + i}", worker_ip=FOLLOWER_IPS[i], worker_ifname=IFNAME,
        total_gpus=HOST_DEVICES, gpu_type=t["device"]["type"], gpu_indexes=list(range(n)),
        computed_resource_claim=ComputedResourceClaim(vram={j: 40 << 30 for j in range(n)}, vram_utilization=0.9),
        ports=PORTS) for i, n in enumerate(followers)]
    draft = model_folder(root, {}, "draft") if spec.get("draft_model") else None
    instance = ModelInstance(
        id=1, name="m-0", worker_id=1, worker_name="worker-1", worker_ip=WORKER_IP, worker_ifname=IFNAME,
        port=PORTS[0], ports=PORTS, source="local_path", local_path=model_path, resolved_path=model_path,
        draft_model_resolved_path=draft, model_id=1, model_name="m", gpu_type=t["device"]["type"], gpu_indexes=gpus,
        computed_resource_claim=ComputedResourceClaim(vram=vram, vram_utilization=0.9),
        distributed_servers=DistributedServers(subordinate_workers=subordinates) if subordinates else None,
        mounted_loras=loras or None, cluster_id=1, owner_principal_id=1,
    )
    if spec.get("draft_model"):
        model.speculative_config.draft_model = "draft"
    worker_id = 2 + d["follower"] if "follower" in d else 1
    return workers, model, instance, worker_id, detected


def _lora(root, lora):
    path = Path(root) / lora["name"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": lora.get("rank", 16), "peft_type": "LORA"}))
    return str(path)


def start(case, catalog, messages):
    """Start one deployment with GPUStack's backend class; the containers the Docker deployer makes
    (what GPUStack reported to its server goes to `messages`)."""
    module, server_class, backend = SERVERS[case["service"]]
    made = []
    with tempfile.TemporaryDirectory(prefix="runner-gpustack-") as tmp:
        root, data = os.path.join(tmp, "models"), os.path.join(tmp, "data")  # GPUStack makes folders in both
        workers, model, instance, worker_id, detected = build(case, root)
        config = Config(data_dir=data, token="runner", server_url="http://127.0.0.1", worker_ifname=IFNAME)
        clientset = ClientSet(workers, model, instance, catalog)
        messages.append(clientset.messages)
        inference_backend = next(b for b in get_built_in_backend() if b.backend_name == backend.value)
        gpustack_platform.arch = lambda: case["platform"].split("/", 1)[1]  # the worker is of the target's platform
        runtime_detector.detect_devices = lambda **kw: detected
        module.create_workload = lambda plan: made.append(docker_create(plan, detected))
        server = server_class(clientset, instance, config, worker_id, inference_backend)
        server.start()
        return _answer(made[0], {root: "/models", data: DATA_DIR})


def _answer(recorder, places):
    pause = recorder.pause()
    containers = []
    for c, planned in zip(recorder.run_containers(), recorder.plan.containers):
        files = {p: f for p, f in recorder.files.get(c["name"], {}).items()}
        containers.append({
            "name": planned.name, "image": c["image"], "entrypoint": c.get("entrypoint"), "command": c.get("command"),
            "working_dir": c.get("working_dir"), "env": dict(sorted(c.get("environment", {}).items())),
            "privileged": bool(c.get("privileged")), "files": files,
            "mounts": [{"type": m.get("Type"), "source": m.get("Source"), "target": m.get("Target"),
                        "read_only": bool(m.get("ReadOnly"))} for m in c.get("mounts") or []],
        })
    model_files = {}  # what GPUStack had mounted: the model's config, a draft model's, the adapters'
    for folder, _, names in os.walk(next(iter(places))):
        for name in names:
            with open(os.path.join(folder, name)) as f:
                model_files[os.path.join(folder, name)] = f.read()
    text = json.dumps({"containers": containers, "model_files": dict(sorted(model_files.items()))})
    for temporary, named in places.items():  # the temporary folders stand for the worker's
        text = text.replace(temporary, named)
    answer = json.loads(text)
    answer["workload"] = {"network": pause.get("network_mode"), "ipc": pause.get("ipc_mode"),
                          "shm_size": pause.get("shm_size"), "privileged": pause.get("privileged")}
    return answer


def main():
    from importlib.metadata import version

    request = json.load(sys.stdin)
    DockerDeployer.is_supported = staticmethod(lambda: True)  # GPUStack asks before it plans for Docker
    results = {}
    for case in request["cases"]:
        messages = []
        try:
            results[case["key"]] = start(case, request["catalog"], messages)
        except BaseException as e:  # noqa: BLE001 - GPUStack's own error is the result (it may sys.exit)
            said = "; ".join(m for found in messages for m in found)
            results[case["key"]] = {"error": f"{said or type(e).__name__ + ': ' + str(e)}\n" + traceback.format_exc(limit=8)}
    from device_profiles import profiles  # beside this file

    json.dump({"gpustack": version("gpustack"), "runtime": version("gpustack-runtime"),
               "addresses": {"leader": WORKER_IP, "followers": FOLLOWER_IPS}, "results": results,
               "profiles": profiles(request.get("profiles", []))}, sys.stdout)


main()
