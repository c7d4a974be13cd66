# What the harness programs stand in for: accelerators (fabricated devices, as gpustack-runtime's
# detection reports them) and the Docker daemon (a client that records what the deployer creates).
# Imported by the harness programs beside it; runs in the consumer's environment only.
import io
import tarfile

HOST_DEVICES = 4  # accelerators each fabricated worker has

# gpustack-runtime's manufacturer for each runner backend
MANUFACTURERS = {"cann": "ascend", "corex": "iluvatar", "cuda": "nvidia", "dtk": "hygon", "hggc": "thead",
                 "maca": "metax", "musa": "mthreads", "rocm": "amd"}


def detected_devices(vendor, name, runtime_version, arch_family=None, compute_capability=None, count=HOST_DEVICES):
    """Devices as gpustack-runtime's detection reports them: index i is /dev/<node>i, render node 128+i."""
    from gpustack_runtime.detector import Device, ManufacturerEnum

    return [Device(manufacturer=ManufacturerEnum(vendor), index=i, name=name, uuid=f"GPU-{i:04d}",
                   runtime_version=runtime_version, compute_capability=compute_capability,
                   appendix={"arch_family": arch_family, "physical_id": i, "card_id": i, "renderd_id": 128 + i})
            for i in range(count)]


class Recorder:
    """What one workload made: the Docker containers (their create options) and the files put in them."""

    def __init__(self):
        self.plan, self.containers, self.files = None, [], {}

    def run_containers(self):
        return [c for c in self.containers if not c["name"].endswith("-pause")]

    def pause(self):
        return next(c for c in self.containers if c["name"].endswith("-pause"))


class FakeContainer:
    def __init__(self, recorder, name):
        self.recorder, self.name, self.id, self.short_id, self.status, self.labels = recorder, name, name, name, "created", {}

    def put_archive(self, path, data):  # the files the deployer writes into the container (scripts, configs)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                content = tar.extractfile(member).read().decode()
                self.recorder.files.setdefault(self.name, {})["/" + member.name] = {
                    "mode": oct(member.mode), "content": content}
        return True

    def start(self):
        pass


class FakeDocker:
    """The Docker daemon as the deployer sees it: no container exists yet, every image is present."""

    def __init__(self, recorder):
        import docker

        errors = docker.errors

        class Containers:
            def get(self, name):
                raise errors.NotFound(name)

            def list(self, **kw):
                return []

            def create(self, image, detach=True, **options):
                recorder.containers.append({"image": image.id, **options})
                return FakeContainer(recorder, options["name"])

        class Images:
            def get(self, name):
                return type("Image", (), {"attrs": {"Config": {}}, "id": name})()

        class Volumes:
            def create(self, **kw):
                return None

        self.containers, self.images, self.volumes = Containers(), Images(), Volumes()

    def ping(self):
        return True


def docker_create(plan, detected):
    """Create a workload plan with gpustack-runtime's own Docker deployer on a host with `detected`
    devices; what it would have asked the Docker daemon for."""
    from gpustack_runtime.deployer import __types__ as deployer_types
    from gpustack_runtime.deployer import __utils__ as deployer_utils
    from gpustack_runtime.deployer.docker import DockerDeployer

    recorder = Recorder()
    recorder.plan = plan
    DockerDeployer.is_supported = staticmethod(lambda: True)
    DockerDeployer._get_client = staticmethod(lambda **kw: FakeDocker(recorder))
    # the deployer reads the devices twice: for visible-device variables, and to correct the runner
    # image's backend version and variant to the host's (remembered per process: forgotten per host here)
    deployer_types.detect_devices = deployer_utils.detect_devices = lambda **kw: detected
    deployer_utils._get_backend.cache_clear()
    deployer_utils._get_backend_version_and_variant.cache_clear()
    deployer = DockerDeployer()
    deployer.create(plan, async_mode=False)
    return recorder
