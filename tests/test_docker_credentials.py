"""The Docker engine's credential pipe, with a stand-in client that reads its config the way the
docker CLI does for a build: once at start and again for BuildKit's auth provider."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import anyio

from runner.engines.docker_client import Docker

_CLIENT = """#!/bin/sh
# read the config as often as asked, then show what is left of the folder
for _ in $(seq "$1"); do cat "$DOCKER_CONFIG/config.json"; echo; done
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
