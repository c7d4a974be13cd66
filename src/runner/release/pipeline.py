"""Build and smoke-test every selected target and platform through the Builder protocol an engine
implements. Builds and smoke runs have lanes of their own (a build lane is free again while its image
is tested); any failure, of any kind, is recorded on its target and platform and the others go on."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from runner.compose.plan import Leaf, Plan
from runner.model.errors import first_error
from runner.model.targets import Target
from runner.verify import batch
from runner.verify.smoke import Check, CheckResult, checks_for

TINI = (["tini", "--"], ["/usr/bin/tini", "--"], ["/sbin/tini", "--"], ["/usr/local/bin/tini", "--"])


class BuildError(Exception):
    """An engine could not build a stage; the message names what failed."""


class BaseUnavailable(BuildError):
    """The engine could not get a base image from its registry: a fault of the registry or of the way
    there (or a base only a vendor's registry has), never of the recipe."""

    def __init__(self, image: str, reason: str) -> None:
        self.image, self.reason = image, reason
        super().__init__(f"cannot pull the base image {image} from {registry_of(image)}: {reason}")


def registry_of(image: str) -> str:
    """The registry host an image reference is pulled from (Docker's rules: docker.io by default)."""
    from runner.compose.mirrors import full_reference

    return full_reference(image).split("/", 1)[0]


# How a docker client says the daemon went away (or never was there), whatever the command
ENGINE_GONE = re.compile(r"Cannot connect to the Docker daemon|Is the docker daemon running|error during connect|"
                         r"dial unix [^ ]+: connect: (no such file|connection refused|permission denied)", re.I)
CAUSES = ("recipe", "smoke", "base image", "engine", "registry")  # the first two are the recipe's to fix
# BuildKit's words (either engine) for a FROM image it could not resolve
_SOURCE_METADATA = re.compile(r"(?:failed to resolve source metadata for|load metadata for) (\S+?):?\s")


def classify(e: BaseException) -> tuple[str, str]:
    """Whose fault a build failure is (one of CAUSES: the recipe's, or the infrastructure's: a base
    image, the engine, a registry) and, for a base image, which one."""
    from runner.model.errors import InfrastructureError

    if isinstance(e, BaseUnavailable):
        return "base image", e.image
    if ENGINE_GONE.search(str(e)):
        return "engine", ""
    if isinstance(e, InfrastructureError):
        return "registry", ""
    if m := _SOURCE_METADATA.search(str(e)):
        return "base image", m[1]
    return "recipe", ""


class DeviceUnavailable(Exception):
    """The engine cannot reach the backend's accelerator: the device check is skipped, not failed."""


@dataclass(frozen=True)
class Image:
    """What an engine built: its handle for later calls, its ID (or digest) and its size in bytes."""

    handle: Any
    image_id: str = ""
    size: int = 0


class Builder(Protocol):
    """What an engine does: build a leaf stage, run a script inside an image, push an image."""

    name: str

    async def build(self, leaf: Leaf) -> Image: ...
    async def entrypoint(self, handle: Any) -> list[str]: ...
    async def run_script(self, handle: Any, script: str, timeout: int) -> tuple[int, str]: ...  # code, output
    # optional: `async def run_check(handle, script, timeout) -> (code, output)`, one check per exec
    async def device_check(self, handle: Any, leaf: Leaf, script: str) -> tuple[int, str]: ...
    async def push(self, handle: Any, ref: str) -> str: ...  # the pushed manifest's digest


class SmokeMemory(Protocol):
    """Remembered smoke results, keyed by what they depend on (see `memory_key`), judged again by the
    checks they are for."""

    def get(self, key: str, checks: Sequence[Check]) -> list[CheckResult] | None: ...
    def put(self, key: str, checks: Sequence[Check], outcomes: Sequence[batch.Outcome]) -> None: ...


@dataclass
class Built:
    """One target on one platform after build and smoke tests."""

    leaf: Leaf
    handle: Any = None
    image_id: str = ""
    size: int = 0
    seconds: float = 0.0
    smoke_seconds: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""
    cause: str = ""  # whose fault the error is: one of CAUSES ("" when it built)
    base_image: str = ""  # with cause "base image": the image that could not be pulled
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

    def why_not(self) -> str:
        """What failed, in a few words: the build error, or the failed checks' names ('' when all passed)."""
        if self.error:
            return self.error
        failed = [c.name for c in self.checks if not c.passed]
        return ", ".join(failed) if failed else ("" if self.checks else "no checks ran")

    def report(self) -> dict:
        failed = [c for c in self.checks if not c.passed]
        return {
            "tag": self.target.tag, "platform": self.platform, "image_id": self.image_id, "digest": self.digest,
            "size": self.size, "build_seconds": round(self.seconds, 3), "smoke_seconds": round(self.smoke_seconds, 3),
            "error": self.error, "cause": self.cause or ("" if self.passed else "recipe" if self.error else "smoke"),
            **({"base_image": self.base_image} if self.base_image else {}),
            "smoke": {"passed": self.passed, "failed": [c.name for c in failed],
                      "remembered": sum(c.cached for c in self.checks), "checks": [c.as_dict() for c in self.checks]},
        }


async def build_all(plan: Plan, engine: Builder, pack: Path, limit: int = 4,
                    progress: Callable[[Built], None] | None = None, gpu: bool = False,
                    memory: SmokeMemory | None = None, smoke_limit: int | None = None) -> list[Built]:
    """Build every leaf of the plan and smoke-test it, at most `limit` builds and `smoke_limit` smoke
    runs at a time. With `gpu`, each image also runs its backend's device check."""
    for leaf in plan.leaves:  # a smoke spec or pattern that cannot work is found before any build
        checks_for(pack, leaf.target, leaf.stage)
    results = [Built(leaf) for leaf in plan.leaves]
    builds = anyio.CapacityLimiter(max(1, limit))
    smokes = anyio.CapacityLimiter(max(1, smoke_limit or limit))

    async def one(b: Built) -> None:
        async with builds:  # the clock starts once a lane is free: time in the queue is no build's
            start = time.perf_counter()
            try:
                image = await engine.build(b.leaf)
                b.handle, b.image_id, b.size = image.handle, image.image_id, image.size
            except Exception as e:  # noqa: BLE001 - any engine failure belongs to this target only
                b.error = describe(e)
                b.cause, b.base_image = classify(e)
            b.seconds = time.perf_counter() - start
        if not b.error:
            async with smokes:
                start = time.perf_counter()
                b.checks = await smoke(engine, b.handle, b.image_id, b.leaf, pack, gpu, memory)
                b.smoke_seconds = time.perf_counter() - start
        if progress:
            progress(b)

    async with anyio.create_task_group() as tg:
        for b in results:
            tg.start_soon(one, b)
    return results


def describe(e: BaseException) -> str:
    """A readable one-paragraph message for any engine error (a task group's, as the error it collected)."""
    e = first_error(e) if isinstance(e, BaseExceptionGroup) else e
    text = str(e).strip() or type(e).__name__
    return text if isinstance(e, BuildError) else f"{type(e).__name__}: {text}"[:1500]


async def smoke(engine: Builder, handle: Any, image_id: str, leaf: Leaf, pack: Path, gpu: bool = False,
                memory: SmokeMemory | None = None) -> list[CheckResult]:
    """The target's smoke checks inside its image: the entrypoint, the specs' checks in one batch
    (remembered by image and rendered checks when `memory` is given) and, with `gpu`, the device check."""
    out: list[CheckResult] = []
    try:
        entry = await engine.entrypoint(handle)
        ok = entry in TINI
        out.append(CheckResult("entrypoint", ok, 0, "" if ok else "entrypoint is not tini --", " ".join(entry)))
    except Exception as e:  # noqa: BLE001
        out.append(CheckResult("entrypoint", False, -1, f"cannot read the entrypoint: {describe(e)}", ""))
    checks = checks_for(pack, leaf.target, leaf.stage)
    key = memory_key(image_id, checks) if memory is not None and image_id else ""
    remembered = memory.get(key, checks) if key and memory is not None else None
    if remembered is not None:
        out += remembered
    else:
        outcomes = await run_checks(engine, handle, checks)
        if key and memory is not None:
            memory.put(key, checks, outcomes)  # finished runs only: never a timeout, a kill, a check that did not run
        out += [_judge(c, o) for c, o in zip(checks, outcomes)]
    if gpu:
        out.append(await device(engine, handle, leaf, pack))
    return out


def _judge(check: Check, o: batch.Outcome) -> CheckResult:
    problem = o.problem and (f"{o.problem}: {o.output.strip()[-600:]}" if not o.ran else o.problem)
    return check.judge(o.exit_code, o.output, o.seconds, problem)


async def run_checks(engine: Builder, handle: Any, checks: Sequence[Check], at_once: int = 8) -> list[batch.Outcome]:
    """Every check's outcome. An engine that runs one check at a time (`run_check`, capturing each
    check's exit code and output itself) gets them `at_once`; any other runs them all in one container
    (`run_script`), their frames signed with a nonce of this run. An engine error fails each check
    with that error."""
    if not checks:
        return []
    each = getattr(engine, "run_check", None)
    if each is not None:
        outcomes: list[batch.Outcome] = [batch.Outcome(-1, "", 0.0, ran=False)] * len(checks)
        limiter = anyio.CapacityLimiter(at_once)

        async def one(i: int, c: Check) -> None:
            async with limiter:
                start = time.perf_counter()
                try:
                    code, output = await each(handle, batch.single(c.script, c.timeout), c.timeout + batch.GRACE + 60)
                    outcomes[i] = batch.outcome(code, output, time.perf_counter() - start, c.timeout)
                except Exception as e:  # noqa: BLE001 - this check's engine error only
                    outcomes[i] = batch.Outcome(-1, describe(e), 0.0, ran=False)

        async with anyio.create_task_group() as tg:
            for i, c in enumerate(checks):
                tg.start_soon(one, i, c)
        return outcomes
    timeouts = [c.timeout for c in checks]
    secret = batch.nonce()
    try:
        code, output = await engine.run_script(handle, batch.script([c.script for c in checks], timeouts, secret),
                                               batch.overall_timeout(timeouts))
        failure = "" if code == 0 else f"the check container exited {code}: {output[-400:]}"
    except Exception as e:  # noqa: BLE001
        output, failure = "", describe(e)
    return batch.parse(output, timeouts, secret, failure)


async def device(engine: Builder, handle: Any, leaf: Leaf, pack: Path) -> CheckResult:
    """The backend's tiny accelerator check; skipped (not failed) where the engine has no device."""
    from runner.verify.profiles import load_profile

    check = Check("device", load_profile(pack, leaf.target.backend, leaf.target.variant).device_check)
    try:
        code, output = await engine.device_check(handle, leaf, check.script)
    except DeviceUnavailable as e:
        return check.skip(str(e))
    except Exception as e:  # noqa: BLE001
        return check.judge(-1, "", 0.0, describe(e))
    return check.judge(code, output)


def memory_key(image_id: str, checks: Sequence[Check]) -> str:
    """What a smoke result depends on: the image and the checks exactly as rendered for it."""
    rendered = json.dumps([vars(c) for c in checks], sort_keys=True)
    return hashlib.sha256(f"{image_id}\0{rendered}".encode()).hexdigest()
