"""A base image pull that a registry runner logged in to answers with 401 (a credential request lost
on a loaded BuildKit session or a faulty proxy) is retried like a push, and is an infrastructure error
when it persists; a registry without runner's credentials gets no retry (its 401 is the user's)."""

from __future__ import annotations

import anyio
import pytest

from runner.compose.stages import base_stage
from runner.engines import docker as engine
from runner.engines.docker import DockerBuilder
from runner.model.errors import InfrastructureError
from runner.release.pipeline import BaseUnavailable

CACHE = "127.0.0.1:5000/ns/runner-build-cache:348646c9f27fc306"
DENIED = (f"#3 [internal] load metadata for {CACHE}\n"
          f"#3 ERROR: pulling from host 127.0.0.1:5000 failed with status code [manifests 348646c9]: 401 Unauthorized\n")


class _Docker:
    """A docker client whose builds answer from a script of (exit code, output), one per call."""

    def __init__(self, answers: list[tuple[int, str]], logged_in: set[str]) -> None:
        self.answers, self.logged_in, self.builds = answers, logged_in, 0
        self.env: dict[str, str] = {}

    async def run(self, *argv: str, **kw) -> tuple[int, str, str]:
        assert argv[0] == "build" and kw.get("auth") is True
        self.builds += 1
        code, text = self.answers.pop(0)
        return code, "", text

    def holds_credentials(self, registry: str) -> bool:
        return registry in self.logged_in


def _build(docker: _Docker, tmp_path) -> DockerBuilder:
    builder = DockerBuilder(docker, {}, push_attempts=3)  # type: ignore[arg-type]
    try:
        anyio.run(builder._docker_build, tmp_path, "x", base_stage(CACHE, "linux/amd64"), "runner-build/x:1")
    finally:
        builder.close()  # its work folder; what the test reads stays on the object
    return builder


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch):
    async def instantly(_seconds: float) -> None:
        return None
    monkeypatch.setattr(engine.anyio, "sleep", instantly)


def test_a_lost_credential_request_is_retried_until_the_pull_works(tmp_path):
    docker = _Docker([(1, DENIED), (1, DENIED), (0, "#9 DONE 0.1s\n")], {"127.0.0.1:5000"})
    builder = _build(docker, tmp_path)
    assert docker.builds == 3 and len(builder.retries) == 2 and "retry 2" in builder.retries[-1]


def test_a_401_that_persists_is_an_infrastructure_error(tmp_path):
    docker = _Docker([(1, DENIED)] * 3, {"127.0.0.1:5000"})
    with pytest.raises(InfrastructureError, match="failed 3 times: .*401 Unauthorized"):
        _build(docker, tmp_path)


def test_a_registry_runner_has_no_credentials_for_gets_no_retry(tmp_path):
    docker = _Docker([(1, DENIED)], set())
    with pytest.raises(BaseUnavailable, match="401 Unauthorized"):
        _build(docker, tmp_path)
    assert docker.builds == 1
