"""A private Docker daemon: runner's embedded engine when no daemon is reachable, and the daemon the
end-to-end tests start. Debian's dockerd with its data, state and socket under one folder
(`--bridge=none --iptables=false --ip-forward=false`: it touches no network set-up of the machine;
builds that reach the package index use `--network host`), stopped with everything it mounted.

The embedded engine lives under the project's cache folder (`engine/`), so its images and build cache
make the next run warm; `runner cache --clear` removes it. A daemon kept with `--keep-engine` is found
again by its pid file and used (and stopped) by the next run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from runner.model.errors import InfrastructureError, UserError
from runner.model.files import cache_root

DEFAULT_SOCKET = Path("/var/run/docker.sock")
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # dockerd lives in sbin, which a user's PATH may lack
# dockerd's state folder holds containerd's sockets, whose paths the kernel caps at 108 bytes
_SOCKET_ROOM = 60


def _docker() -> str:
    from runner.engines.docker_client import DOCKER

    return DOCKER


def answers(host: str, timeout: float = 20) -> bool:
    """Whether the daemon at `host` (a DOCKER_HOST value) answers `docker version`."""
    try:
        done = subprocess.run([_docker(), "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              env={**os.environ, "DOCKER_HOST": host}, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def dockerd() -> str:
    """The dockerd binary, or "" when it is not installed."""
    return shutil.which("dockerd", path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN])) or ""


class PrivateDaemon:
    """One dockerd whose data, state, pid file and socket live under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        state = root / "x"
        if len(str(state)) > _SOCKET_ROOM:  # a long cache path: state and socket go to a short folder of their own
            state = Path(tempfile.gettempdir()) / f"runner-engine-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
        self.state = state
        self.socket = state / "d.sock" if state != root / "x" else root / "d.sock"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def pid(self) -> int:
        """The pid of this folder's running dockerd (0 when none runs)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return 0
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return 0
        return pid if comm == "dockerd" else 0

    def running(self) -> bool:
        return bool(self.pid()) and answers(self.host)

    def start(self, timeout: float = 90) -> None:
        """Start dockerd and wait until it answers; a failure says why, with the end of its log."""
        binary = dockerd()
        if not binary:
            raise UserError("dockerd is not installed", hint="install Debian's docker.io package")
        if os.geteuid() != 0:
            raise UserError("a private Docker daemon needs root", hint="run as root, or start Docker and set DOCKER_HOST")
        for folder in (self.root, self.data, self.state):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket.unlink(missing_ok=True)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [binary, f"--data-root={self.data}", f"--exec-root={self.state}", f"--pidfile={self.pidfile}",
                 f"--host={self.host}", "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.socket.exists() and answers(self.host, timeout=10):
                return
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        self.stop()
        raise UserError(f"the private Docker daemon did not start within {timeout:.0f} s: " + " / ".join(tail),
                        hint=f"its whole log was {self.log}")

    def stop(self, remove: bool = False) -> None:
        """Stop the daemon (its own process, or the one the pid file names), unmount what it left
        mounted and remove its socket; with `remove`, its data too."""
        pid = self.process.pid if self.process and self.process.poll() is None else self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, self.process, 30):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, self.process, 10)
        for folder in (self.state, self.data, self.root):
            for mount in reversed(_mounts_under(folder)):
                subprocess.run(["umount", "-l", mount], capture_output=True)
        self.socket.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        if self.state != self.root / "x":
            shutil.rmtree(self.state, ignore_errors=True)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def _wait_gone(pid: int, process: subprocess.Popen | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return True
        elif not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.2)
    return False


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/mounts") as f:
        return [m for m in (line.split()[1] for line in f) if m.startswith(prefix) or m == str(root)]


def embedded() -> PrivateDaemon:
    """The project's embedded engine (under its cache folder)."""
    return PrivateDaemon(cache_root() / "engine")


@contextlib.contextmanager
def engine_for_run(keep: bool = False, say: Callable[[str], None] = print) -> Iterator[str]:
    """The Docker daemon this run builds on, as DOCKER_HOST (set in the environment for the run): the
    one $DOCKER_HOST names, else the machine's daemon on its default socket, else runner's embedded
    daemon, started here and stopped when the run ends (unless `keep`)."""
    if os.environ.get("DOCKER_HOST"):
        yield os.environ["DOCKER_HOST"]
        return
    if DEFAULT_SOCKET.exists() and answers(f"unix://{DEFAULT_SOCKET}"):
        yield f"unix://{DEFAULT_SOCKET}"
        return
    if not dockerd() or os.geteuid() != 0:
        from runner.engines.docker_client import ENGINE_HINT

        why = "dockerd is not installed" if not dockerd() else "runner is not root, so it cannot start its own"
        raise InfrastructureError(f"no container engine: no daemon answers on DOCKER_HOST or {DEFAULT_SOCKET}, "
                                  f"and {why}", advice=ENGINE_HINT)
    daemon = embedded()
    if daemon.running():
        say(f"runner: engine: the private dockerd kept from an earlier run ({daemon.host})")
    else:
        started = time.monotonic()
        daemon.start()
        say(f"runner: engine: started a private dockerd ({daemon.host}, data under {daemon.data}) in "
            f"{time.monotonic() - started:.1f} s")
    os.environ["DOCKER_HOST"] = daemon.host
    try:
        yield daemon.host
    finally:
        del os.environ["DOCKER_HOST"]
        if keep:
            say(f"runner: engine: kept running (DOCKER_HOST={daemon.host}; `runner cache --clear` stops and removes it)")
        else:
            daemon.stop()
            say("runner: engine: private dockerd stopped")
