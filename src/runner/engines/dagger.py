"""The stage plan on the Dagger engine: one Container per distinct stage, so stages shared across the
matrix are the same Container object (and the engine builds them once).

Every input of a stage is stable (the created label comes from the recipe commit, never the clock),
so the engine's cache serves unchanged stages and unchanged smoke runs. Registry reads and writes are
not execs at all: runner.release.registry talks to the registry from the function's own process, so
no registry answer is ever served from the engine's cache and no credential lands in a layer."""

from __future__ import annotations

import shlex
from typing import Any

import dagger
from dagger import dag

from runner.compose.mirrors import Mirrors
from runner.release.build_cache import BuildCache
from runner.compose.plan import Leaf
from runner.compose.stages import CopyFrom, Entrypoint, Env, File, Run, Stage, Workdir
from runner.release.pipeline import BuildError, DeviceUnavailable, Image

SHELL = ["bash", "-eo", "pipefail", "-c"]
_SHARING = {"locked": dagger.CacheSharingMode.LOCKED, "shared": dagger.CacheSharingMode.SHARED,
            "private": dagger.CacheSharingMode.PRIVATE}
GPU_HINT = ("the engine has no GPU support: start it with _EXPERIMENTAL_DAGGER_GPU_SUPPORT=1 in the dagger "
            "CLI's environment, on a host with the NVIDIA container toolkit")


class StageContainers:
    """Translates stages into Containers, memoised by content key."""

    def __init__(self, build_info: dict[str, str] | None = None, mirrors: Mirrors = Mirrors()) -> None:
        self._by_key: dict[str, dagger.Container] = {}
        self.build_info = build_info or {}
        self.mirrors = mirrors
        self.substitutes: dict[str, str] = {}  # stage key -> build-cache image holding it

    def substitute(self, found: dict[str, str]) -> None:
        """Start from these build-cache images for their stages (before any container is made)."""
        self.substitutes.update(found)
        for key in found:
            self._by_key.pop(key, None)

    def container(self, stage: Stage) -> dagger.Container:
        """The Container of a stage (its parents and copy sources included)."""
        found = self._by_key.get(stage.key)
        if found is None:
            found = self._by_key[stage.key] = self._make(stage)
        return found

    def _make(self, stage: Stage) -> dagger.Container:
        if stage.key in self.substitutes:
            return dag.container(platform=dagger.Platform(stage.platform)).from_(self.substitutes[stage.key])
        if stage.parent is None:
            return dag.container(platform=dagger.Platform(stage.platform)).from_(stage.image)
        ctr = self.container(stage.parent)
        exports = "".join(f"export {a.name}={shlex.quote(a.value)}\n" for a in stage.args)
        for step in stage.steps:
            ctr = self._apply(ctr, step, exports)
        if stage.tag:
            ctr = self._label(ctr, stage)
        return ctr

    def _apply(self, ctr: dagger.Container, step, exports: str) -> dagger.Container:
        if isinstance(step, Run):
            for cache in step.caches:
                ctr = ctr.with_mounted_cache(cache.target, dag.cache_volume(cache.id), sharing=_SHARING[cache.sharing])
            for mount in step.mounts:
                ctr = ctr.with_mounted_directory(mount.target, self.container(mount.stage).directory(mount.source))
            ctr = ctr.with_exec([*SHELL, exports + self.mirrors.text(step.script)])
            for path in [c.target for c in step.caches] + [m.target for m in step.mounts]:
                ctr = ctr.without_mount(path)  # mounts serve one step, as in the Dockerfile
            return ctr
        if isinstance(step, Env):
            for name, value in step.values:
                ctr = ctr.with_env_variable(name, value, expand="${" in value)
            return ctr
        if isinstance(step, File):
            return ctr.with_new_file(step.path, step.content, permissions=step.mode)
        if isinstance(step, CopyFrom):
            return ctr.with_directory(step.dest, self.container(step.stage).directory(step.source))
        if isinstance(step, Workdir):
            return ctr.with_workdir(step.path)
        assert isinstance(step, Entrypoint)
        return ctr.with_entrypoint(list(step.args))

    def _label(self, ctr: dagger.Container, leaf: Stage) -> dagger.Container:
        oci = {"org.opencontainers.image.version": leaf.tag, **{f"org.opencontainers.image.{k}": v
                                                                 for k, v in self.build_info.items() if v}}
        for name, value in [*oci.items(), *leaf.labels]:
            ctr = ctr.with_label(name, value)
        for name, value in oci.items():
            ctr = ctr.with_annotation(name, value)
        return ctr


def engine_error(what: str, e: dagger.DaggerError) -> BuildError:
    """A readable BuildError from any engine error: a failed exec, a pull, a rate limit."""
    if isinstance(e, dagger.ExecError):
        cmd = " ".join(e.command)[:200]
        return BuildError(f"{what}: `{cmd}` exited {e.exit_code}: {(e.stderr or e.stdout).strip()[-800:]}")
    return BuildError(f"{what}: {type(e).__name__}: {str(e).strip()[:1200]}")


class DaggerBuilder:
    """The pipeline's Builder on Dagger. Registry credentials are Dagger secrets only."""

    name = "dagger"

    def __init__(self, stages: StageContainers, registry: str = "", username: str = "",
                 password: dagger.Secret | None = None, build_cache: BuildCache | None = None) -> None:
        self.stages = stages
        self.registry, self.username, self.password = registry, username, password
        self.build_cache = build_cache

    def _auth(self, ctr: dagger.Container) -> dagger.Container:
        if self.password is not None and self.registry:
            ctr = ctr.with_registry_auth(self.registry, self.username, self.password)
        return ctr

    async def build(self, leaf: Leaf) -> Image:
        return await self.build_stage(leaf.stage)

    async def build_stage(self, stage: Stage) -> Image:
        """A stage's Container, evaluated; with a build cache, started from the stages already there,
        and the shared stages made here published for the next jobs."""
        digest, found = "", {}
        if self.build_cache is not None:
            digest = await self.base_digest(stage.chain()[0].image, stage.platform)
            found = await self.build_cache.substitutes(stage, digest)
            self.stages.substitute(found)
        ctr = self.stages.container(stage)
        try:
            await ctr.sync()
            for shared in self.build_cache.to_publish(stage, found) if self.build_cache else ():
                await self.push(self.stages.container(shared), self.build_cache.ref(shared, digest))
                self.build_cache.published.append(f"{shared.kind} {shared.name} {shared.platform}")
        except dagger.DaggerError as e:
            raise engine_error(f"{stage.tag or stage.name} on {stage.platform}", e) from None
        return Image(ctr)

    async def base_digest(self, image: str, platform: str) -> str:
        """The base image by content: the digest the engine resolves its reference to."""
        if "@sha256:" in image:
            return image.split("@", 1)[1]
        try:
            ref = await self._auth(dag.container(platform=dagger.Platform(platform))).from_(image).image_ref()
        except dagger.DaggerError as e:
            raise engine_error(f"resolve the base image {image}", e) from None
        return ref.rsplit("@", 1)[-1]

    async def engine_version(self) -> str:
        """The Dagger engine's version, for provenance."""
        return f"dagger {await dag.version()}"

    async def entrypoint(self, handle: dagger.Container) -> list[str]:
        return await handle.entrypoint()

    async def run_script(self, handle: dagger.Container, script: str, timeout: int) -> tuple[int, str]:
        """A script in one exec, fed on standard input (never in argv, environment or a file)."""
        import anyio

        run = handle.with_exec(["sh", "-s"], stdin=script, use_entrypoint=True, expect=dagger.ReturnType.ANY)
        try:
            with anyio.fail_after(timeout):
                return await run.exit_code(), (await run.stdout()) + (await run.stderr())
        except dagger.DaggerError as e:
            raise engine_error("the smoke checks", e) from None

    async def run_check(self, handle: dagger.Container, script: str, timeout: int) -> tuple[int, str]:
        """One smoke check in an exec of its own: the engine captures its exit code and output, so no
        other process of the image can answer for it, and caches it while image and check are unchanged."""
        import anyio

        run = handle.with_exec(["sh", "-c", script], use_entrypoint=True, expect=dagger.ReturnType.ANY)
        try:
            with anyio.fail_after(timeout):
                return await run.exit_code(), (await run.stdout()) + (await run.stderr())
        except dagger.DaggerError as e:
            raise engine_error("a smoke check", e) from None

    async def device_check(self, handle: dagger.Container, leaf: Leaf, script: str) -> tuple[int, str]:
        """NVIDIA through Dagger's GPU support; other accelerators need their host's devices."""
        if leaf.target.backend != "cuda":
            raise DeviceUnavailable(f"Dagger has no {leaf.target.backend} device support: on a host with the device "
                                    f"run `runner run-command {leaf.target.tag} --device-check`")
        run = handle.experimental_with_all_gp_us().with_exec(["sh", "-c", script], use_entrypoint=True,
                                                            expect=dagger.ReturnType.ANY)
        try:
            return await run.exit_code(), (await run.stdout()) + (await run.stderr())
        except dagger.QueryError as e:
            if "GPU support is not enabled" in str(e):
                raise DeviceUnavailable(GPU_HINT) from None
            raise engine_error("the device check", e) from None

    async def push(self, handle: dagger.Container, ref: str) -> str:
        try:
            return (await self._auth(handle).publish(ref)).rsplit("@", 1)[-1]
        except dagger.DaggerError as e:
            raise engine_error(f"push {ref}", e) from None

    async def existing(self, ref: str, platform: str) -> tuple[Any, str]:
        """An existing image by reference, for smoke-testing it (the engine pulls it)."""
        ctr = self._auth(dag.container(platform=dagger.Platform(platform))).from_(ref)
        try:
            await ctr.sync()
        except dagger.DaggerError as e:
            raise engine_error(f"pull {ref} for {platform}", e) from None
        return ctr, ""
