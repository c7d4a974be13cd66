"""The stage plan on a local Docker daemon's BuildKit, for build hosts that cannot run the Dagger
engine: Dockerfiles rendered from the plan, built one platform at a time with cache mounts, smoke
checks in one `docker run` per image, pushes with `docker push`. The docker client itself, and how
registry credentials reach it, is runner.engines.docker_client."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from runner.compose.dockerfile import render, stages_for
from runner.compose.lookup import base_stages
from runner.compose.mirrors import Mirrors
from runner.compose.plan import Leaf
from runner.compose.stages import Stage
from runner.engines.build_records import BuildRecords, inputs_key
from runner.engines.docker_client import Docker
from runner.model.errors import InfrastructureError, UserError
from runner.release.pipeline import BaseUnavailable, BuildError, Image, registry_of

if TYPE_CHECKING:
    from runner.release.build_cache import BuildCache

_STEP = re.compile(r"^#(\d+) \[[^\]]*\] RUN ")
_STATE = re.compile(r"^#(\d+) (CACHED|DONE|ERROR)")
_METADATA = re.compile(r"^#(\d+) \[internal\] load metadata for (\S+)")
_REQUEST = re.compile(r'^failed to do request: [A-Za-z]+ "[^"]*": ')
_UNAUTHORIZED = re.compile(r"\b401\b|unauthorized|authentication required", re.I)
_TRANSIENT = re.compile(r"connection reset|i/o timeout|timeout|EOF|TLS handshake|50[0-4]|429|too ?many ?requests|"
                        r"unavailable|broken pipe|connection refused", re.I)


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
                 keep_progress: bool = False, reproducible: bool = False) -> None:
        self.docker, self.build_info, self.pack, self.form, self.network = docker, build_info, pack, form, network
        self.mirrors, self.build_cache, self.records = mirrors, build_cache, records
        self.push_attempts = push_attempts
        self.reproducible = reproducible  # images rewritten with clamped timestamps (runner.release.reproducible)
        self.counts = StepCounts()
        self.retries: list[str] = []
        self.workdir = tempfile.mkdtemp(prefix="runner-build-")
        self._inspected: dict[str, _Inspected] = {}
        self._base_ids: dict[str, str] = {}  # base image -> "ID os/arch", asked once per run
        self.progress: dict[str, str] | None = {} if keep_progress else None  # image -> BuildKit's output (rehearsals)
        self._building: dict[str, anyio.Event] = {}  # stage key -> set when the build making it ends
        self._made: set[str] = set()  # stage keys a finished build of this run made

    async def build(self, leaf: Leaf) -> Image:
        return await self.build_stage(leaf.stage, f"runner-build/{leaf.target.tag}:{leaf.platform.replace('/', '-')}")

    async def build_stage(self, stage: Stage, image: str = "") -> Image:
        """Build a stage (a target's image, or a shared stage a CI job publishes) into `image`; with a
        build cache, start from the stages already there and publish the shared ones built here."""
        image = image or f"runner-build/{stage.name}:{stage.key[:12]}"
        substitutes, digests, found = {}, {}, None
        if self.build_cache is not None:
            digests = {b: await self.base_digest(self.mirrors.image(b.image), b.platform) for b in base_stages(stage)}
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
        if self.reproducible:
            await self._normalize(stage, image)
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

    async def _normalize(self, stage: Stage, image: str) -> None:
        """Replace the image with its reproducible form (see runner.release.reproducible)."""
        from runner.release.reproducible import epoch_of, normalize_archive

        base = self.mirrors.image(stage.chain()[0].image)
        _, out, _ = await self.docker.run("image", "inspect", "--format", "{{json .RootFS.Layers}}", base, check=False)
        folder = Path(tempfile.mkdtemp(prefix="runner-normalize-", dir=self.workdir))
        try:
            await self.docker.run("save", "-o", str(folder / "image.tar"), image, timeout=3600)
            await anyio.to_thread.run_sync(_unpack, folder)
            epoch = epoch_of(self.build_info.get("created") or "1970-01-01T00:00:00Z")
            before = (await self.inspect(image)).image_id
            if await anyio.to_thread.run_sync(normalize_archive, folder, epoch, json.loads(out or "null") or []):
                await anyio.to_thread.run_sync(_pack, folder)
                await self.docker.run("load", "-q", "-i", str(folder / "image.tar"), timeout=3600)
                await self.docker.run("rmi", before, check=False)  # the unclamped twin, now untagged
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @asynccontextmanager
    async def _claim(self, stage: Stage):
        """Wait while another build of this run makes a stage this one needs, then claim the rest:
        separate `docker build`s do not share a step that is still running, so two builds at once
        would both run a shared stage BuildKit has not cached yet."""
        keys = [s.key for s in stages_for(stage) if s.key not in self._made]
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
            pulled = self.mirrors.image(base.image)
            if pulled not in bases:
                if pulled not in self._base_ids:
                    _, out, _ = await self.docker.run("image", "inspect", "--format",
                                                      "{{.Id}} {{.Os}}/{{.Architecture}}", pulled, check=False)
                    self._base_ids[pulled] = out.strip()
                image_id, _, platform = self._base_ids[pulled].partition(" ")
                if platform != stage.platform:
                    return ""  # not here (or another platform's): BuildKit pulls it
                bases[pulled] = image_id
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
        for attempt in range(1, self.push_attempts + 1):
            code, out, err = await self.docker.run(
                "build", "--platform", stage.platform, "--network", self.network, "--progress", "plain",
                "--target", target, *self._build_args(), "-t", image, "-f", str(ctx / "Dockerfile"), str(ctx),
                check=False, auth=True)
            self.counts.add(err + out)
            unavailable = base_failure(err + out, [self.mirrors.image(b.image) for b in base_stages(stage)]) \
                if code != 0 else None
            # a registry runner logged in to (its credentials checked through the registry API first) that
            # answers a base's pull with 401 lost a credential request on the way (a loaded BuildKit's
            # session, a faulty proxy): retried as a push is, an infrastructure error if it persists
            if not (unavailable and _UNAUTHORIZED.search(unavailable.reason)
                    and self.docker.holds_credentials(registry_of(unavailable.image))):
                break
            if attempt == self.push_attempts:
                raise InfrastructureError(f"pulling the base {unavailable.image} failed {attempt} times: "
                                          f"{unavailable.reason}")
            self.retries.append(f"base {unavailable.image}: {unavailable.reason[-200:]}; retry {attempt}")
            await anyio.sleep(min(30.0, 2.0 * 2 ** attempt))
        if self.progress is not None:
            self.progress[image] = err + out
        if code != 0:
            if unavailable:
                raise unavailable
            failed = [line for line in (err + out).splitlines() if "ERROR" in line or "executor failed" in line]
            raise BuildError(' | '.join(failed[-3:]) or err.strip()[-800:])

    async def base_digest(self, image: str, platform: str) -> str:
        """What the base image is, by content: its registry digest, or its ID for a local-only image
        (pulled first when the daemon lacks it)."""
        if "@sha256:" in image:
            return image.split("@", 1)[1]
        if await self.local_platform(image) != platform:
            code, _, err = await self.docker.run("pull", "--platform", platform, image, check=False, timeout=3600,
                                                 auth=True)
            if code != 0:
                raise BaseUnavailable(image, f"{platform}: {_last_line(err)}")
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
        """Run a script in a throwaway container with no network, fed to `sh -s` on standard input (so
        it is in no argv the image's processes can read); kill the container if it overruns."""
        name = f"runner-smoke-{uuid.uuid4().hex[:12]}"
        try:
            code, out, err = await self.docker.run("run", "--rm", "-i", "--name", name, "--network", "none", handle,
                                                   "sh", "-s", stdin=script.encode(), check=False, timeout=timeout)
        except TimeoutError:
            await self.docker.run("rm", "-f", name, check=False, timeout=60)
            raise BuildError(f"the smoke container ran past {timeout}s and was removed") from None
        except anyio.get_cancelled_exc_class():  # SIGTERM: the container goes with the run
            with anyio.CancelScope(shield=True):
                await self.docker.run("rm", "-f", name, check=False, timeout=30)
            raise
        return code, out + err

    async def device_check(self, handle: str, leaf: Leaf, script: str) -> tuple[int, str]:
        """The backend's device check through the profile's docker run line (devices, mounts, runtime)."""
        from runner.verify.profiles import load_profile, run_command

        if self.pack is None:
            raise BuildError("the device check needs the pack folder of the project")
        profile = load_profile(self.pack, leaf.target.backend, leaf.target.variant)
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
            code, out, err = await self.docker.run("push", ref, check=False, timeout=3600, auth=True)
            if code == 0:
                found = re.findall(r"digest: (sha256:[0-9a-f]{64})", out)
                if not found:
                    raise BuildError(f"docker push {ref} printed no digest")
                self._inspected.pop(handle, None)  # its RepoDigests changed
                return found[-1]
            message = (err.strip() or out.strip())[-800:]
            refused = re.search(r"denied|unauthorized|authentication required", message, re.I)
            if refused and re.search(r"denied", message, re.I):  # an access denial is the account's to fix
                raise UserError(f"the registry refused the push of {ref}: {message.splitlines()[-1]}")
            # the credentials were checked through the registry API before the build: an "unauthorized"
            # after that is a token request the way there lost (a faulty proxy or registry), retried below
            if not (refused or _TRANSIENT.search(message)):
                raise BuildError(f"docker push {ref} failed: {message}")
            if attempt == self.push_attempts:
                raise InfrastructureError(f"docker push {ref} failed {attempt} times: {message}")
            self.retries.append(f"push {ref}: {message.splitlines()[-1][:200]}; retry {attempt}")
            await anyio.sleep(min(30.0, 2.0 * 2 ** attempt))
        raise AssertionError("unreachable")

    async def engine_version(self) -> str:
        """The daemon and its version (its BuildKit is built in), for provenance."""
        _, out, _ = await self.docker.run("version", "--format", "docker {{.Server.Version}}", check=False)
        return out.strip()

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
            code, _, err = await self.docker.run("pull", "--platform", platform, ref, check=False, timeout=3600,
                                                 auth=True)
            if code != 0:
                raise BuildError(f"cannot pull {ref} for {platform}: {err.strip()[-500:]}")
            if await self.local_platform(ref) != platform:
                raise BuildError(f"{ref} has no {platform} image")
        found = await self.inspect(ref)
        return ref, found.image_id

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _unpack(folder: Path) -> None:
    import tarfile

    with tarfile.open(folder / "image.tar") as tar:
        tar.extractall(folder, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))  # 3.11.4+
    (folder / "image.tar").unlink()


def _pack(folder: Path) -> None:
    """The archive docker load reads: manifest.json, the config and the layers it names."""
    import tarfile

    entry = json.loads((folder / "manifest.json").read_text())[0]
    with tarfile.open(folder / "image.tar", "w") as tar:
        for name in ("manifest.json", entry["Config"], *entry["Layers"]):
            tar.add(folder / name, name)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-500:] if lines else "no message"


def base_failure(progress: str, bases: list[str]) -> BaseUnavailable | None:
    """The base image a failed `docker build` could not load, from BuildKit's plain progress (a step
    `[internal] load metadata for IMAGE` that ends in ERROR), named as the recipe names it."""
    loading: dict[str, str] = {}
    for line in progress.splitlines():
        if m := _METADATA.match(line):
            loading[m[1]] = m[2]
        elif line.startswith("#") and " ERROR: " in line and (step := line[1:].split(" ", 1)[0]) in loading:
            ref = loading[step]
            named = next((b for b in bases if ref == b or ref.endswith("/" + b) or ref.endswith("/library/" + b)), ref)
            reason = _REQUEST.sub("", line.split(" ERROR: ", 1)[1].strip())  # the URL repeats the image's name
            return BaseUnavailable(named, reason[-500:])
    return None

