"""The stage plan on a local Docker daemon's BuildKit, for build hosts that cannot run the Dagger
engine: Dockerfiles rendered from the plan, built one platform at a time with cache mounts, smoke
checks in one `docker run` per image, pushes with `docker push`.

Registry credentials for the daemon's pushes live in a private DOCKER_CONFIG (mode 0700, file 0600)
made for the run and removed on every exit path; one left by a killed run is removed at the next
start. The password reaches `docker login` on stdin only; no child process gets it in its environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from runner.compose.dockerfile import render
from runner.compose.lookup import base_stages, stages_under
from runner.compose.mirrors import Mirrors
from runner.compose.plan import Leaf
from runner.compose.stages import Stage
from runner.engines.build_records import BuildRecords, inputs_key
from runner.model.errors import UserError
from runner.release.pipeline import BuildError, Image

if TYPE_CHECKING:
    from runner.release.build_cache import BuildCache

DOCKER = os.environ.get("RUNNER_DOCKER", "/usr/bin/docker")  # the client matching Debian's 20.10 daemon
SECRET_VARIABLES = ("REGISTRY_PASSWORD",)  # never passed on to a child process
_STEP = re.compile(r"^#(\d+) \[[^\]]*\] RUN ")
_STATE = re.compile(r"^#(\d+) (CACHED|DONE|ERROR)")
_TRANSIENT = re.compile(r"connection reset|i/o timeout|timeout|EOF|TLS handshake|50[0-4]|429|too ?many ?requests|"
                        r"temporarily unavailable|broken pipe|connection refused", re.I)
_CONFIG_PREFIX = "runner-docker-config-"


@dataclass
class StepCounts:
    """RUN steps BuildKit executed or found in its cache, over every build of a run."""

    executed: int = 0
    cached: int = 0
    images_unchanged: int = 0  # images not sent to BuildKit: inputs and image as the last build left them

    def add(self, progress: str) -> None:
        steps: dict[str, str] = {}
        for line in progress.splitlines():
            if m := _STEP.match(line):
                steps[m[1]] = line.split("] ", 1)[1][:120]
            elif (m := _STATE.match(line)) and m[1] in steps:
                steps.pop(m[1])
                if m[2] == "CACHED":
                    self.cached += 1
                else:
                    self.executed += 1


def _private_root() -> Path:
    """Where credentials go: memory-backed when the machine has it, so a crash leaves no disk copy."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def sweep_stale_configs(root: Path | None = None) -> list[Path]:
    """Remove credential folders of runs that were killed before they could clean up."""
    removed = []
    for folder in (root or _private_root()).glob(f"{_CONFIG_PREFIX}*"):
        pid = folder.name[len(_CONFIG_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class Docker:
    """The docker client, with a private config directory for registry credentials."""

    def __init__(self, binary: str = DOCKER) -> None:
        if not shutil.which(binary):
            raise UserError("docker client not found", value=binary,
                            hint="install Debian's docker.io (or set RUNNER_DOCKER to a client matching your daemon)")
        self.binary = binary
        sweep_stale_configs()
        self.config = tempfile.mkdtemp(prefix=f"{_CONFIG_PREFIX}{os.getpid()}-", dir=_private_root())
        os.chmod(self.config, 0o700)
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        self.env = {**env, "DOCKER_CONFIG": self.config, "DOCKER_BUILDKIT": "1"}

    async def run(self, *argv: str, stdin: bytes | None = None, check: bool = True,
                  timeout: float | None = None) -> tuple[int, str, str]:
        with anyio.fail_after(timeout):
            result = await anyio.run_process([self.binary, *argv], input=stdin, env=self.env, check=False)
        out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        if check and result.returncode != 0:
            raise BuildError(f"docker {argv[0]} failed: {err.strip()[-1500:] or out.strip()[-1500:]}")
        return result.returncode, out, err

    async def login(self, registry: str, username: str, password: str) -> None:
        """Store credentials in the private config (password through stdin, never argv or environment)."""
        old = os.umask(0o077)
        try:
            code, _, err = await self.run("login", "--username", username, "--password-stdin", registry,
                                          stdin=password.encode(), check=False, timeout=120)
        finally:
            os.umask(old)
        if code != 0:
            raise UserError(f"login to {registry} failed: {err.strip().splitlines()[-1] if err.strip() else code}")
        config = Path(self.config) / "config.json"
        if config.exists():
            config.chmod(0o600)

    def close(self) -> None:
        shutil.rmtree(self.config, ignore_errors=True)

    def __enter__(self) -> Docker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Inspected:
    image_id: str
    size: int
    entrypoint: list[str]
    repo_digests: list[str] = field(default_factory=list)


class DockerBuilder:
    """The pipeline's Builder on a Docker daemon."""

    name = "docker"

    def __init__(self, docker: Docker, build_info: dict[str, str], pack: Path | None = None, form: str = "compat",
                 network: str = "host", push_attempts: int = 4, mirrors: Mirrors = Mirrors(),
                 build_cache: BuildCache | None = None, records: BuildRecords | None = None,
                 keep_progress: bool = False) -> None:
        self.docker, self.build_info, self.pack, self.form, self.network = docker, build_info, pack, form, network
        self.mirrors, self.build_cache, self.records = mirrors, build_cache, records
        self.push_attempts = push_attempts
        self.counts = StepCounts()
        self.retries: list[str] = []
        self.workdir = tempfile.mkdtemp(prefix="runner-build-")
        self._inspected: dict[str, _Inspected] = {}
        self._base_ids: dict[str, str] = {}  # base image -> "ID os/arch", asked once per run
        self._building: dict[str, anyio.Event] = {}  # stage key -> set when the build making it ends
        self._made: set[str] = set()  # stage keys a finished build of this run made
        self.progress: dict[str, str] | None = {} if keep_progress else None  # image -> BuildKit's output (rehearsals)

    async def build(self, leaf: Leaf) -> Image:
        return await self.build_stage(leaf.stage, f"runner-build/{leaf.target.tag}:{leaf.platform.replace('/', '-')}")

    async def build_stage(self, stage: Stage, image: str = "") -> Image:
        """Build a stage (a target's image, or a shared stage a CI job publishes) into `image`; with a
        build cache, start from the stages already there and publish the shared ones built here."""
        image = image or f"runner-build/{stage.name}:{stage.key[:12]}"
        substitutes, digests, found = {}, {}, None
        if self.build_cache is not None:
            digests = {b: await self.base_digest(b.image, b.platform) for b in base_stages(stage)}
            found = await self.build_cache.lookup(stage, digests)
            substitutes = self.build_cache.substitutes(found, digests)
        rendered = render(stage, self.form, self.mirrors, substitutes)
        key = await self._inputs(stage, rendered.text, rendered.target, image) if self.build_cache is None else ""
        if key and (unchanged := await self._unchanged(image, key)):
            self.counts.cached += sum(line.startswith("RUN ") for line in rendered.text.splitlines())
            self.counts.images_unchanged += 1
            return Image(image, unchanged.image_id, unchanged.size)
        ctx = Path(self.workdir) / f"{stage.name}-{stage.key[:12]}"
        ctx.mkdir(parents=True, exist_ok=True)
        (ctx / "Dockerfile").write_text(rendered.text)
        async with self._claim(stage):
            await self._docker_build(ctx, rendered.target, stage, image)
        if self.build_cache is not None and found is not None:
            for shared in self.build_cache.to_publish(found):
                ref = self.build_cache.ref(shared, digests)
                await self._docker_build(ctx, rendered.stage_names[shared.key], shared, ref)
                await self.push(ref, ref)
                self.build_cache.published.append(f"{shared.kind} {shared.name} {shared.platform}")
        inspected = await self.inspect(image)
        if key and self.records is not None:
            self.records.put(key, inspected.image_id)
        return Image(image, inspected.image_id, inspected.size)

    @asynccontextmanager
    async def _claim(self, stage: Stage):
        """Wait while another build of this run makes a stage this one needs, then claim the rest:
        separate `docker build`s do not share a step that is still running, so two builds at once
        would both run a shared stage BuildKit has not cached yet."""
        keys = [s.key for s in stages_under(stage) if s.key not in self._made]
        while pending := [self._building[k] for k in keys if k in self._building]:
            await pending[0].wait()
        keys = [k for k in keys if k not in self._made]
        done = anyio.Event()
        for k in keys:
            self._building[k] = done
        try:
            yield
            self._made.update(keys)  # in BuildKit's cache now: later builds share them freely
        finally:
            for k in keys:
                self._building.pop(k, None)
            done.set()

    def _build_args(self) -> list[str]:
        return [f"--build-arg=BUILD_{k.upper()}={v}" for k, v in sorted(self.build_info.items())]

    async def _inputs(self, stage: Stage, dockerfile: str, target: str, image: str) -> str:
        """The key of everything this build depends on ('' when a base image is not on the daemon)."""
        if self.records is None:
            return ""
        bases: dict[str, str] = {}
        for base in base_stages(stage):
            if base.image not in bases:
                if base.image not in self._base_ids:
                    _, out, _ = await self.docker.run("image", "inspect", "--format",
                                                      "{{.Id}} {{.Os}}/{{.Architecture}}", base.image, check=False)
                    self._base_ids[base.image] = out.strip()
                image_id, _, platform = self._base_ids[base.image].partition(" ")
                if platform != stage.platform:
                    return ""  # not here (or another platform's): BuildKit pulls it
                bases[base.image] = image_id
        daemon = self.docker.env.get("DOCKER_HOST", "")
        return inputs_key(daemon, image, dockerfile, target, stage.platform, self._build_args(), bases)

    async def _unchanged(self, image: str, key: str) -> _Inspected | None:
        """The image, when the daemon still holds what the last build with these inputs produced."""
        recorded = self.records.get(key) if self.records is not None else ""
        if not recorded:
            return None
        try:
            found = await self.inspect(image)
        except BuildError:
            return None
        return found if found.image_id == recorded else None

    async def _docker_build(self, ctx: Path, target: str, stage: Stage, image: str) -> None:
        code, out, err = await self.docker.run(
            "build", "--platform", stage.platform, "--network", self.network, "--progress", "plain",
            "--target", target, *self._build_args(), "-t", image, "-f", str(ctx / "Dockerfile"), str(ctx), check=False)
        self.counts.add(err + out)
        if self.progress is not None:
            self.progress[image] = err + out
        if code != 0:
            failed = [line for line in (err + out).splitlines() if "ERROR" in line or "executor failed" in line]
            raise BuildError(f"{stage.tag or stage.name} on {stage.platform}: "
                             f"{' | '.join(failed[-3:]) or err.strip()[-800:]}")

    async def base_digest(self, image: str, platform: str) -> str:
        """What the base image is, by content: its registry digest, or its ID for a local-only image
        (pulled first when the daemon lacks it)."""
        if "@sha256:" in image:
            return image.split("@", 1)[1]
        if await self.local_platform(image) != platform:
            code, _, err = await self.docker.run("pull", "--platform", platform, image, check=False, timeout=3600)
            if code != 0:
                raise BuildError(f"cannot pull the base image {image} for {platform}: {err.strip()[-500:]}")
        found = await self.inspect(image)
        digests = [d.split("@", 1)[1] for d in found.repo_digests if "@" in d]
        return digests[0] if digests else found.image_id

    async def inspect(self, ref: str) -> _Inspected:
        """ID, size, entrypoint and registry digests of a local image, in one call."""
        _, out, _ = await self.docker.run("image", "inspect", "--format",
                                          "{{json .Id}} {{json .Size}} {{json .Config.Entrypoint}} {{json .RepoDigests}}", ref)
        image_id, size, entry, digests = (json.loads(x) for x in out.split(" ", 3))
        found = self._inspected[ref] = _Inspected(image_id, int(size), entry or [], digests or [])
        return found

    async def entrypoint(self, handle: str) -> list[str]:
        found = self._inspected.get(handle) or await self.inspect(handle)
        return found.entrypoint

    async def run_script(self, handle: str, script: str, timeout: int) -> tuple[int, str]:
        """Run a script in a throwaway container with no network; kill it if it overruns."""
        name = f"runner-smoke-{uuid.uuid4().hex[:12]}"
        try:
            code, out, err = await self.docker.run("run", "--rm", "--name", name, "--network", "none", handle,
                                                   "sh", "-c", script, check=False, timeout=timeout)
        except TimeoutError:
            await self.docker.run("rm", "-f", name, check=False, timeout=60)
            raise BuildError(f"the smoke container ran past {timeout}s and was removed") from None
        return code, out + err

    async def device_check(self, handle: str, leaf: Leaf, script: str) -> tuple[int, str]:
        """The backend's device check through the profile's docker run line (devices, mounts, runtime)."""
        from runner.verify.profiles import load_profile, run_command

        if self.pack is None:
            raise BuildError("the device check needs the pack folder of the project")
        profile = load_profile(self.pack, leaf.target.backend)
        argv = [a for a in run_command(profile, handle, ["sh", "-c", script])[1:] if a != "-it"]
        code, out, err = await self.docker.run(*argv, check=False, timeout=600)
        return code, out + err

    async def known_digest(self, handle: str, repository: str) -> str:
        """The digest this image already has in `repository`, when the daemon pushed it there before."""
        found = self._inspected.get(handle) or await self.inspect(handle)
        for entry in found.repo_digests:
            repo, _, digest = entry.partition("@")
            if repo == repository:
                return digest
        return ""

    async def push(self, handle: str, ref: str) -> str:
        """docker push, retried with backoff when the registry or the network fails for a while."""
        await self.docker.run("tag", handle, ref)
        for attempt in range(1, self.push_attempts + 1):
            code, out, err = await self.docker.run("push", ref, check=False, timeout=3600)
            if code == 0:
                found = re.findall(r"digest: (sha256:[0-9a-f]{64})", out)
                if not found:
                    raise BuildError(f"docker push {ref} printed no digest")
                self._inspected.pop(handle, None)  # its RepoDigests changed
                return found[-1]
            message = (err.strip() or out.strip())[-800:]
            refused = re.search(r"denied|unauthorized|authentication required", message, re.I)
            if refused and (attempt == self.push_attempts or re.search(r"denied", message, re.I)):
                # the credentials were checked before the build: an "unauthorized" that persists (or an
                # access denial) is the account's to fix; a passing one is a fault of the way there
                raise UserError(f"the registry refused the push of {ref}: {message.splitlines()[-1]}")
            if attempt == self.push_attempts or not (refused or _TRANSIENT.search(message)):
                raise BuildError(f"docker push {ref} failed: {message}")
            self.retries.append(f"push {ref}: {message.splitlines()[-1][:200]}; retry {attempt}")
            await anyio.sleep(min(30.0, 2.0 * 2 ** attempt))
        raise AssertionError("unreachable")

    async def native_platform(self) -> str:
        """The daemon's own platform (what it builds without emulation)."""
        _, out, _ = await self.docker.run("version", "--format", "{{.Server.Os}}/{{.Server.Arch}}", timeout=60)
        return out.strip()

    async def local_platform(self, ref: str) -> str:
        """The platform of a local image ('' when there is no such local image)."""
        code, out, _ = await self.docker.run("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref,
                                             check=False)
        return out.strip() if code == 0 else ""

    async def existing(self, ref: str, platform: str) -> tuple[str, str]:
        """An existing image for a platform: the local one when it is that platform, else pulled."""
        if await self.local_platform(ref) != platform:
            code, _, err = await self.docker.run("pull", "--platform", platform, ref, check=False, timeout=3600)
            if code != 0:
                raise BuildError(f"cannot pull {ref} for {platform}: {err.strip()[-500:]}")
            if await self.local_platform(ref) != platform:
                raise BuildError(f"{ref} has no {platform} image")
        found = await self.inspect(ref)
        return ref, found.image_id

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
