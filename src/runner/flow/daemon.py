"""The Docker daemon a local run builds on: the one that answers on $DOCKER_HOST (or the default
socket), else runner's embedded one (runner.engines.private_daemon), started for the run."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from runner.engines.private_daemon import engine_for_run


def local_daemon(keep: bool, say: Callable[[str], None]) -> AbstractContextManager:
    """DOCKER_HOST naming a daemon that answers while the context is open; `keep` leaves a started one running."""
    return engine_for_run(keep=keep, say=say)


async def require_engine() -> str:
    """The daemon's version, asked before anything is made; no daemon is one error with the advice every
    command that builds gives (runner.engines.docker_client.ENGINE_HINT)."""
    from runner.engines.docker_client import Docker

    return await Docker().require_engine()
