"""The docker client of the Docker engine, and how registry credentials reach it.

Registry credentials stay in this process's memory. A docker command that talks to a registry (push,
pull, build) gets its own private DOCKER_CONFIG folder whose config.json is a named pipe: runner
writes the credentials into the pipe each time the client opens it and removes the folder when the
command ends, so they are never in a file, and a run killed at any moment leaves at most an empty
pipe (swept at the next start).
No child process gets the password in its environment or argv, and every docker child dies with
runner (parent-death signal through setpriv), even when runner is killed with SIGKILL."""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anyio

from runner.model.errors import InfrastructureError, UserError, first_error
from runner.release.pipeline import BuildError

DOCKER = os.environ.get("RUNNER_DOCKER", "/usr/bin/docker")  # the client matching Debian's 20.10 daemon
# What to do without a reachable engine: the one place that names the ways to get one, said by every
# command that builds (`runner build`, `job`, `publish`, `rehearse`) and by the embedded engine's start.
ENGINE_HINT = ("start Docker, point DOCKER_HOST at a daemon you can reach (RUNNER_DOCKER names the docker client to "
               "use), or run as root with Debian's docker.io installed so runner starts its own "
               "(`runner build` and `runner rehearse` do; --keep-engine keeps it for the next run)")
SECRET_VARIABLES = ("REGISTRY_PASSWORD",)  # never passed on to a child process
_CONFIG_PREFIX = "runner-docker-config-"


def _private_root() -> Path:
    """Where credentials go: memory-backed when the machine has it, so a crash leaves no disk copy."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def sweep_stale_configs(root: Path | None = None) -> list[Path]:
    """Remove credential folders of runs that were killed before they could clean up."""
    removed = []
    for folder in (root or _private_root()).glob(f"{_CONFIG_PREFIX}*"):
        pid = folder.name[len(_CONFIG_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class Docker:
    """The docker client: a credential-free config for every command, credentials through a named pipe
    for the commands that reach a registry."""

    def __init__(self, binary: str = DOCKER, secrets: Sequence[str] = ()) -> None:
        if not shutil.which(binary):
            raise UserError("docker client not found", value=binary,
                            hint="install Debian's docker.io (or set RUNNER_DOCKER to a client matching your daemon)")
        self.binary = binary
        sweep_stale_configs()
        self.config = _private_folder()
        # no child inherits a password, whatever the variable holding it was called
        hidden = {v for v in secrets if v} | {os.environ.get(n, "") for n in SECRET_VARIABLES} - {""}
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES and v not in hidden}
        self.env = {**env, "DOCKER_CONFIG": self.config, "DOCKER_BUILDKIT": "1"}
        self._auths: dict[str, dict[str, str]] = {}
        self._reaper = [shutil.which("setpriv") or "", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []

    async def run(self, *argv: str, stdin: bytes | None = None, check: bool = True,
                  timeout: float | None = None, auth: bool = False) -> tuple[int, str, str]:
        """A docker command; with `auth`, the run's registry credentials reach it through a named pipe."""
        env = self.env
        folder = _private_folder() if auth and self._auths else ""
        if folder:
            os.mkfifo(Path(folder) / "config.json", 0o600)
            env = {**env, "DOCKER_CONFIG": folder}
        try:
            with anyio.fail_after(timeout):
                async with await anyio.open_process([*self._reaper, self.binary, *argv], env=env,
                                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL) as proc:
                    try:
                        async with anyio.create_task_group() as tg:
                            out, err = bytearray(), bytearray()
                            tg.start_soon(_drain, proc.stdout, out)
                            tg.start_soon(_drain, proc.stderr, err)
                            if folder:
                                tg.start_soon(self._hand_over, folder, proc)
                            if stdin is not None:
                                await proc.stdin.send(stdin)
                            if proc.stdin is not None:
                                await proc.stdin.aclose()
                            code = await proc.wait()
                    except ExceptionGroup as group:  # what went wrong, as itself (never "unhandled errors in a TaskGroup")
                        proc.kill()  # a client left waiting for its config would hold the command forever
                        raise first_error(group) from None
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        text_out, text_err = out.decode(errors="replace"), err.decode(errors="replace")
        if check and code != 0:
            raise BuildError(f"docker {argv[0]} failed: {text_err.strip()[-1500:] or text_out.strip()[-1500:]}")
        return code, text_out, text_err

    async def require_engine(self) -> str:
        """The daemon's version, asked before anything builds; no daemon is one error said once, with
        what to do (runner.model.errors.InfrastructureError: nothing is wrong with the input)."""
        try:
            code, out, err = await self.run("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
        except TimeoutError:
            code, out, err = 1, "", "the daemon did not answer within 30 s"
        if code == 0 and out.strip():
            return out.strip()
        where = self.env.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
        lines = [line for line in err.strip().splitlines() if line.strip()]
        raise InfrastructureError(f"no container engine at {where}: {lines[-1] if lines else 'docker version failed'}",
                                  advice=ENGINE_HINT)

    async def _hand_over(self, folder: str, proc: anyio.abc.Process) -> None:
        """Write the credentials into the config pipe each time the client opens it, until it exits.

        The client reads its config more than once: at start, and again for BuildKit's auth provider
        when `docker build` pulls from a registry. Each read gets one copy; the next is written only
        once the reader has closed the pipe (so no read sees two). The folder goes when the command ends."""
        pipe = Path(folder) / "config.json"
        data = json.dumps({"auths": self._auths}).encode()
        wait = 0.005
        while proc.returncode is None:
            try:
                fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:  # ENXIO: no reader yet; anything else: the pipe is gone
                if e.errno != errno.ENXIO:
                    return
                await anyio.sleep(wait)
                wait = min(wait * 1.5, 0.1)  # a build runs for hours: poll less often as it goes on
                continue
            try:
                await anyio.to_thread.run_sync(_give_copy, fd, data)
            finally:
                os.close(fd)
            wait = 0.005
            while proc.returncode is None and _holds(proc.pid, pipe):  # a walk of /proc: back off as for opens
                await anyio.sleep(wait)
                wait = min(wait * 1.5, 0.1)
            wait = 0.005

    async def login(self, registry: str, username: str, password: str) -> None:
        """Keep credentials (checked through the registry API first) in memory for the commands that need them."""
        self._auths[_auth_key(registry)] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}

    def holds_credentials(self, registry: str) -> bool:
        """Whether `login` gave credentials for this registry host."""
        return _auth_key(registry) in self._auths

    def close(self) -> None:
        self._auths.clear()
        shutil.rmtree(self.config, ignore_errors=True)

    def __enter__(self) -> Docker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _auth_key(registry: str) -> str:
    """The config's key for a registry's credentials (Docker Hub's is its v1 URL)."""
    return "https://index.docker.io/v1/" if registry in ("docker.io", "index.docker.io") else registry


def _holds(pid: int, path: Path) -> bool:
    """Whether the client, or a process it started, still has `path` open (its reader has not yet seen
    the end of one copy): a CLI plugin (docker-buildx) or a wrapper's child reads the config itself."""
    for member in _tree(pid):
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(path):
                    return True
            except OSError:
                continue
    return False


def _tree(pid: int) -> list[int]:
    """The process and its descendants, from /proc (each entry's parent in its stat line)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")"
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += children.get(out[-1], [])
    return out


def _give_copy(fd: int, data: bytes) -> bool:
    """Write one copy of the config to the reader that opened the pipe; False when it closed first (a
    cancelled read): nothing is lost, the next open gets its own copy."""
    os.set_blocking(fd, True)
    try:
        os.write(fd, data)
    except BrokenPipeError:
        return False
    return True


async def _drain(stream, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


def _private_folder() -> str:
    """A folder for one docker config that only this user can enter, named after this process."""
    folder = tempfile.mkdtemp(prefix=f"{_CONFIG_PREFIX}{os.getpid()}-", dir=_private_root())
    os.chmod(folder, 0o700)
    return folder
