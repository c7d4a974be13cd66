"""Build and smoke-test every selected target and platform under a concurrency limit, through the
Builder protocol an engine implements; a failure is recorded on its target and platform."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from runner.compose.plan import Leaf, Plan
from runner.model.targets import Target
from runner.verify.smoke import Check, CheckResult, checks_for


class BuildError(Exception):
    """An engine could not build a stage; the message names what failed."""


class Builder(Protocol):
    """What an engine does: build a leaf stage, run a check inside it, push images."""

    name: str

    async def build(self, leaf: Leaf) -> tuple[Any, str, int]: ...  # handle, image id/digest, size in bytes
    async def run_check(self, handle: Any, check: Check) -> tuple[int, str]: ...  # exit code, output
    async def entrypoint(self, handle: Any) -> list[str]: ...
    async def push(self, handle: Any, ref: str) -> str: ...  # digest
    async def push_index(self, ref: str, images: Sequence[Built]) -> str: ...  # digest of the index
    async def from_ref(self, ref: str, platform: str) -> Any: ...  # a handle for an already pushed image
    async def run_device_check(self, handle: Any, leaf: Leaf, pack: Path) -> tuple[int, str]: ...


class Registry(Protocol):
    """Registry operations by reference: resolve a tag, copy by digest, delete, list tags."""

    async def digest(self, ref: str) -> str | None: ...
    async def copy(self, src: str, dst: str) -> None: ...
    async def delete(self, ref: str) -> None: ...
    async def tags(self, repository: str) -> list[str]: ...


@dataclass
class Built:
    """One target on one platform after build and smoke tests."""

    leaf: Leaf
    handle: Any = None
    image_id: str = ""
    size: int = 0
    seconds: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""
    digest: str = ""  # set when published

    @property
    def target(self) -> Target:
        return self.leaf.target

    @property
    def platform(self) -> str:
        return self.leaf.platform

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.checks) and all(c.passed for c in self.checks)

    def report(self) -> dict:
        failed = [c for c in self.checks if not c.passed]
        return {
            "tag": self.target.tag, "platform": self.platform, "image_id": self.image_id, "digest": self.digest,
            "size": self.size, "build_seconds": round(self.seconds, 3), "error": self.error,
            "smoke": {"passed": self.passed, "failed": [c.name for c in failed], "checks": [c.as_dict() for c in self.checks]},
        }


async def build_all(plan: Plan, engine: Builder, pack: Path, limit: int = 4,
                    progress: Callable[[Built], None] | None = None, gpu: bool = False) -> list[Built]:
    """Build every leaf of the plan and run its smoke checks, at most `limit` at a time. A failure is
    recorded on its target and platform; the others go on. With `gpu`, each image also runs its
    backend's tiny device check on an accelerator."""
    results = [Built(leaf) for leaf in plan.leaves]
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def one(b: Built) -> None:
        async with limiter:
            start = time.perf_counter()
            try:
                b.handle, b.image_id, b.size = await engine.build(b.leaf)
            except BuildError as e:
                b.error = str(e)
            b.seconds = time.perf_counter() - start
            if not b.error:
                b.checks = await smoke(engine, b, pack, gpu)
        if progress:
            progress(b)

    async with anyio.create_task_group() as tg:
        for b in results:
            tg.start_soon(one, b)
    return results


async def smoke(engine: Builder, b: Built, pack: Path, gpu: bool = False) -> list[CheckResult]:
    """Run the target's smoke checks inside its built image, plus the entrypoint check (and the
    device check of the backend's profile, with `gpu`)."""
    out: list[CheckResult] = []
    entry = await engine.entrypoint(b.handle)
    ok = entry[:1] in (["tini"], ["/usr/bin/tini"]) and entry[1:] == ["--"]
    out.append(CheckResult("entrypoint", ok, 0, "" if ok else "entrypoint is not tini --", " ".join(entry)))
    checks = checks_for(pack, b.target, b.leaf.stage)
    batch = getattr(engine, "run_checks", None)  # engines that can run all checks in one container
    runs = await batch(b.handle, checks) if batch else [await engine.run_check(b.handle, c) for c in checks]
    out += [check.judge(code, output) for check, (code, output) in zip(checks, runs)]
    if gpu:
        from runner.verify.profiles import load_profile

        check = Check("device", load_profile(pack, b.target.backend).device_check)
        out.append(check.judge(*await engine.run_device_check(b.handle, b.leaf, pack)))
    return out
