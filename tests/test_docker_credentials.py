"""The Docker engine's credential pipe, with a stand-in client that reads its config the way the
docker CLI does for a build: once at start and again for BuildKit's auth provider."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import anyio

from runner.engines.docker_client import Docker, _give_copy

_CLIENT = """#!/bin/sh
# read the config as often as asked, in this very process as the docker CLI does (a `cat` child would
# hold the pipe where runner does not look, and a second copy could reach it), then show what is left
for _ in $(seq "$1"); do
  while IFS= read -r line || [ -n "$line" ]; do printf '%s' "$line"; done < "$DOCKER_CONFIG/config.json"; echo
done
ls -A "$DOCKER_CONFIG"
"""


def _client(tmp_path: Path) -> str:
    path = tmp_path / "docker"
    path.write_text(_CLIENT)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _run(docker: Docker, reads: int) -> tuple[str, str]:
    async def go():
        await docker.login("registry.test:5000", "ci", "s3cret")
        return await docker.run(str(reads), auth=True)

    code, out, err = anyio.run(go)
    assert code == 0, err
    return out, err


def test_every_read_of_the_config_gets_the_credentials_once(tmp_path):
    with Docker(binary=_client(tmp_path), secrets=["s3cret"]) as docker:
        out, _ = _run(docker, 3)
    lines = out.splitlines()
    configs = [json.loads(line) for line in lines[:3]]  # one whole copy per read, none doubled
    assert all(c["auths"]["registry.test:5000"]["auth"] for c in configs)
    assert lines[3:] == ["config.json"]  # only the pipe itself, never a file with the credentials


def test_the_pipe_folder_is_gone_when_the_command_ends(tmp_path):
    with Docker(binary=_client(tmp_path)) as docker:
        _run(docker, 1)
        root = Path(docker.config).parent
        left = [p for p in root.glob(f"runner-docker-config-{os.getpid()}-*") if p != Path(docker.config)]
    assert left == []



def test_a_reader_that_closed_before_its_copy_does_not_fail_the_command(tmp_path):
    pipe = tmp_path / "config.json"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)  # the hand-over saw a reader ...
    os.close(reader)  # ... which left before the copy was written
    try:
        assert _give_copy(writer, b'{"auths": {}}') is False
    finally:
        os.close(writer)


def test_a_failure_inside_a_docker_command_is_reported_as_itself(tmp_path, monkeypatch):
    async def broken(self, folder, proc):
        raise PermissionError("the pipe cannot be written")

    monkeypatch.setattr(Docker, "_hand_over", broken)
    with Docker(binary=_client(tmp_path)) as docker:
        try:
            _run(docker, 1)
        except PermissionError as e:  # not an ExceptionGroup saying "unhandled errors in a TaskGroup"
            assert "cannot be written" in str(e)
        else:
            raise AssertionError("the hand-over's error was lost")
