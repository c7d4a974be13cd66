"""The stage plan on the Dagger engine: one Container per distinct stage, so stages shared across the
matrix are the same Container object (and the engine builds them once)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import dagger
from dagger import dag

from runner.release.pipeline import BuildError, Built
from runner.compose.plan import Leaf
from runner.verify.smoke import Check
from runner.compose.stages import CopyFrom, Entrypoint, Env, File, Run, Stage, Workdir

SHELL = ["bash", "-eo", "pipefail", "-c"]
SKOPEO_IMAGE = "quay.io/skopeo/stable:v1.16.1"
_SHARING = {"locked": dagger.CacheSharingMode.LOCKED, "shared": dagger.CacheSharingMode.SHARED,
            "private": dagger.CacheSharingMode.PRIVATE}


class StageContainers:
    """Translates stages into Containers, memoised by content key."""

    def __init__(self, build_info: dict[str, str] | None = None) -> None:
        self._by_key: dict[str, dagger.Container] = {}
        self.build_info = build_info or {}

    def container(self, stage: Stage) -> dagger.Container:
        """The Container of a stage (its parents and copy sources included)."""
        found = self._by_key.get(stage.key)
        if found is None:
            found = self._by_key[stage.key] = self._make(stage)
        return found

    def _make(self, stage: Stage) -> dagger.Container:
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
            ctr = ctr.with_exec([*SHELL, exports + step.script])
            for cache in step.caches:
                ctr = ctr.without_mount(cache.target)  # caches serve one step, as in the Dockerfile
            return ctr
        if isinstance(step, Env):
            for name, value in step.values:
                ctr = ctr.with_env_variable(name, value)
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


class DaggerBuilder:
    """The pipeline's Builder on Dagger. Registry credentials are Dagger secrets only."""

    name = "dagger"

    def __init__(self, stages: StageContainers, registry: str = "", username: str = "",
                 password: dagger.Secret | None = None) -> None:
        self.stages = stages
        self.registry, self.username, self.password = registry, username, password

    def _auth(self, ctr: dagger.Container) -> dagger.Container:
        if self.password is not None and self.registry:
            ctr = ctr.with_registry_auth(self.registry, self.username, self.password)
        return ctr

    async def build(self, leaf: Leaf) -> tuple[dagger.Container, str, int]:
        ctr = self.stages.container(leaf.stage)
        try:
            await ctr.sync()
        except dagger.ExecError as e:
            raise BuildError(f"{leaf.target.tag} on {leaf.platform}: `{' '.join(e.command)[:200]}` exited {e.exit_code}: "
                             f"{e.stderr.strip()[-800:]}") from None
        return ctr, "", 0

    async def run_check(self, handle: dagger.Container, check: Check) -> tuple[int, str]:
        run = handle.with_exec(["sh", "-c", check.script], use_entrypoint=True, expect=dagger.ReturnType.ANY)
        return await run.exit_code(), (await run.stdout()) + (await run.stderr())

    async def entrypoint(self, handle: dagger.Container) -> list[str]:
        return await handle.entrypoint()

    async def push(self, handle: dagger.Container, ref: str) -> str:
        return (await self._auth(handle).publish(ref)).rsplit("@", 1)[-1]

    async def push_index(self, ref: str, images: Sequence[Built]) -> str:
        # single-arch images were pushed already; the index is published from the same containers
        variants = [b.handle for b in images]
        return (await self._auth(dag.container()).publish(ref, platform_variants=variants)).rsplit("@", 1)[-1]


    async def run_device_check(self, handle: dagger.Container, leaf: Leaf, pack) -> tuple[int, str]:
        """NVIDIA through Dagger's GPU support; other accelerators need their host's devices."""
        from runner.verify.profiles import load_profile

        if leaf.target.backend != "cuda":
            return 1, (f"Dagger has no {leaf.target.backend} device support: on a host with the device run "
                       f"`runner run-command {leaf.target.tag} --device-check`")
        check = load_profile(pack, leaf.target.backend).device_check
        run = handle.experimental_with_all_gp_us().with_exec(["sh", "-c", check], use_entrypoint=True,
                                                            expect=dagger.ReturnType.ANY)
        return await run.exit_code(), (await run.stdout()) + (await run.stderr())

    async def from_ref(self, ref: str, platform: str) -> dagger.Container:
        return self._auth(dag.container(platform=dagger.Platform(platform))).from_(ref)


def skopeo_runner(password: dagger.Secret | None, registry: str, username: str, insecure: bool):
    """A skopeo Run for runner.release.registry.Skopeo that runs in a pinned skopeo container; the auth file
    is built from the secret inside the container, so the password never appears as plain text."""

    async def run(argv: list[str], files: dict[str, bytes] | None = None) -> tuple[int, str, str]:
        ctr = dag.container().from_(SKOPEO_IMAGE)
        for path, data in (files or {}).items():
            ctr = ctr.with_new_file(path, data.decode())
        if password is not None:
            ctr = (ctr.with_secret_variable("REGISTRY_PASSWORD", password)
                   .with_env_variable("REGISTRY_USER", username).with_env_variable("REGISTRY", registry)
                   .with_exec(["sh", "-c", 'mkdir -p /auth && printf \'{"auths":{"%s":{"auth":"%s"}}}\' "$REGISTRY" '
                               '"$(printf %s:%s "$REGISTRY_USER" "$REGISTRY_PASSWORD" | base64 | tr -d \'\\n\')" > /auth/config.json']))
        ctr = ctr.with_exec(["skopeo", *argv], expect=dagger.ReturnType.ANY)
        return await ctr.exit_code(), await ctr.stdout(), await ctr.stderr()

    return run


AUTHFILE = "/auth/config.json"
