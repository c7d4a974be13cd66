"""End-to-end fixtures: one real Docker daemon, registry and package index for the whole session."""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e import infra


@pytest.fixture(scope="session")
def e2e(request):
    missing = infra.missing_tools()
    if os.geteuid() != 0:
        missing.append("root (dockerd must run as root)")
    if missing:
        message = ("end-to-end tests need: " + ", ".join(missing) +
                   "; install with `apt-get install docker.io docker-registry skopeo qemu-user-static binfmt-support "
                   "busybox-static tini apache2-utils debootstrap` and `dpkg --add-architecture arm64 && apt-get update` "
                   "(`sudo bash setup.sh --system` does this)")
        if os.environ.get("RUNNER_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    # a CI cancel (SIGTERM) must still stop the daemon and remove its data: turn it into the interrupt
    # pytest tears fixtures down on
    previous = signal.signal(signal.SIGTERM, _interrupt)
    env = infra.start()
    try:
        _prefetch_standins(request.session, env)
        yield env
    finally:
        infra.stop(env)
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def two_daemons(e2e):
    """Two fresh Docker daemons that share nothing with the session's but the registry and the package
    index (two CI runners), stopped when the module is done."""
    first = infra.second_daemon(e2e)
    try:
        second = infra.second_daemon(e2e)
        try:
            yield first, second
        finally:
            infra.stop(second)
    finally:
        infra.stop(first)


def _prefetch_standins(session: pytest.Session, env: infra.Environment) -> None:
    """Start downloading the wheels of the stand-ins the session's real-service tests will build, in
    the order they run, while the tests before them use the daemon: their modules say which
    (planned_standins), and the build of each waits for its own set."""
    from tests.conftest import ROOT
    from runner.compose.project import _validate
    from tests.e2e import standin

    modules = list(dict.fromkeys(m for m in (getattr(item, "module", None) for item in session.items)
                                 if hasattr(m, "planned_standins")))
    if modules:
        project = _validate(ROOT / "matrix.yaml", ROOT / "pack")
        standin.prefetch(env, [s for module in modules for s in module.planned_standins(project)])


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
