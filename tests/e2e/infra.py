"""What the end-to-end tests (and bench/e2e_build.py) start and stop: a Docker daemon with its data
under a temp dir, a registry with a password on a free 127.0.0.1 port, a package index for the
fixture, and busybox-static base images for amd64 and arm64 (arm64 runs through qemu-user-static).
Everything lives under one temp dir and is removed, mounts included, when the session ends."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.engines.private_daemon import PrivateDaemon

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "e2e"
TEST_CACHE = Path(os.environ.get("RUNNER_TEST_CACHE") or Path.home() / ".cache" / "runner-tests")  # kept between runs
DOCKER = "/usr/bin/docker"
TOOLS = {"dockerd": "docker.io", DOCKER: "docker.io", "docker-registry": "docker-registry", "skopeo": "skopeo",
         "qemu-aarch64-static": "qemu-user-static", "busybox": "busybox-static", "htpasswd": "apache2-utils",
         "dpkg-deb": "dpkg", "apt-get": "apt", "/usr/bin/tini-static": "tini", "debootstrap": "debootstrap"}
APPLETS = ("sh", "ash", "cat", "echo", "ls", "mkdir", "rm", "ln", "tar", "gzip", "gunzip", "wget", "patch", "grep",
           "sed", "test", "[", "printenv", "base64", "chmod", "env", "head", "tail", "true", "false", "printf", "uname",
           "sleep", "id", "cp", "mv", "touch", "find", "xargs", "tr", "cut", "sort", "wc", "which")
ECHO_SERVE = """#!/bin/sh
VERSION=$(cat /opt/echo/VERSION)
case "$1" in
  --version) echo "echo-serve $VERSION" ;;
  greet) echo "${GREETING:-hello}" ;;
  serve) if [ "$2" = --help ]; then echo "usage: echo-serve serve MODEL [--host H] [--port P] [--served-model-name N]"; else echo serving; fi ;;
  *) echo "usage: echo-serve --version | serve | greet" >&2; exit 2 ;;
esac
"""


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def elf_interpreter(path: Path) -> str:
    """The program interpreter an ELF binary names ("" for a static binary): a dynamic busybox in the
    fixture's base, which has no libraries, fails every step with `exec /bin/bash: no such file`."""
    import struct

    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only: the machines this runs on
            return f"not a 64-bit ELF binary: {path}"
        order = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            kind, _, offset, _, _, size = struct.unpack(order + "IIQQQQ", f.read(40))
            if kind == 3:  # PT_INTERP
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode(errors="replace")
    return ""


def static_busybox() -> Path:
    """The busybox the amd64 fixture base is made of: on PATH, and statically linked."""
    found = Path(shutil.which("busybox") or "/bin/busybox")
    if not found.exists():
        raise RuntimeError("busybox is not installed: install Debian's busybox-static")
    if interpreter := elf_interpreter(found.resolve()):
        raise RuntimeError(f"{found} is dynamically linked ({interpreter}), so the fixture's base image cannot run "
                           "it: install Debian's busybox-static (it replaces busybox)")
    return found


def missing_tools() -> list[str]:
    """Debian packages to install for the end-to-end tests (empty when all are here)."""
    need = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if shutil.which("busybox") and elf_interpreter(Path(shutil.which("busybox")).resolve()):
        need.append("busybox-static (the busybox on PATH is dynamically linked)")
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        need.append("binfmt_misc with qemu-aarch64 registered (qemu-user-static, binfmt-support)")
    return need


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


@dataclass
class Environment:
    """The running services and the environment `runner` needs to use them."""

    root: Path
    registry: str = ""
    username: str = "runner-ci"
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(12))
    index: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    daemon: PrivateDaemon | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.root}/d.sock"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for runner processes: the daemon, the package index, a private cache."""
        return {**os.environ, "DOCKER_HOST": self.docker_host, "RUNNER_FIXTURE_INDEX": self.index,
                "RUNNER_CACHE_DIR": str(self.root / "runner-cache"), "REGISTRY_USERNAME": self.username, **extra}

    def docker(self, *args: str, check: bool = True, input: str | None = None,
               timeout: float | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([DOCKER, *args], env=self.env(), capture_output=True, text=True, input=input,
                              timeout=timeout)
        if check and done.returncode != 0:
            said = (done.stdout + done.stderr)[-3000:]
            if "no space left on device" in said:  # what filled the disk, for the report
                said += "\n" + self._disk()
            raise RuntimeError(f"docker {' '.join(args[:3])} failed: {said}")
        return done

    def _disk(self) -> str:
        """Free space where the daemon and the test cache keep their files, and the daemon's own account."""
        free = {str(p): f"{shutil.disk_usage(p).free / 2**30:.1f} GiB free" for p in (self.root, TEST_CACHE) if p.exists()}
        usage = subprocess.run([DOCKER, "system", "df"], env=self.env(), capture_output=True, text=True).stdout
        return f"disk: {free}\n{usage}"

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        auth = self.root / "skopeo-auth.json"
        if not auth.exists():
            import base64
            import json

            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            auth.write_text(json.dumps({"auths": {self.registry: {"auth": token}}}))
        return subprocess.run(["skopeo", *args[:1], f"--authfile={auth}", *args[1:]], capture_output=True, text=True,
                              check=check)

    def runner(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        """Run the runner CLI on the fixture, the password only in the environment."""
        cmd = [sys.executable, "-m", "runner", *args]
        return subprocess.run(cmd, env=self.env(**{"REGISTRY_PASSWORD": self.password, **extra_env}), capture_output=True,
                              text=True, cwd=self.root / "project")


def start(root: Path | None = None) -> Environment:
    """Start everything; call stop() whatever happens."""
    root = root or Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp"))  # short: unix socket paths are limited
    e = Environment(root)
    try:
        shutil.copytree(FIXTURE, root / "project")
        git = ["git", "-C", str(root / "project"), "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):  # a recipe commit, as in a checkout
            subprocess.run(git + args, check=True, capture_output=True)
        _start_index(e)
        _start_dockerd(e)
        _import_bases(e)
        _start_registry(e)
    except BaseException:
        stop(e)
        raise
    return e


def second_daemon(e: Environment) -> Environment:
    """Another Docker daemon that shares nothing with `e`'s but the registry and the package index (a
    second CI runner); the base images are copied over as they are (same IDs, as a registry pull
    would give). stop() it after."""
    other = Environment(Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp")), registry=e.registry, username=e.username,
                        password=e.password, index=e.index)
    try:
        shutil.copytree(e.root / "project", other.root / "project")
        _start_dockerd(other)
        bases = [line for line in e.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
                 if line.startswith("runner-fixture/")]
        saved = other.root / "bases.tar"
        e.docker("save", "-o", str(saved), *bases)
        other.docker("load", "-i", str(saved))
        saved.unlink()
    except BaseException:
        stop(other)
        raise
    return other


def start_registry(root: Path | None = None, delete: bool = True, username: str = "", password: str = "") -> Environment:
    """Just a registry with a password on 127.0.0.1 (no daemon, no root needed); stop() it after.
    With delete=False it refuses manifest deletes, as Docker Hub does."""
    e = Environment(root or Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp")))
    e.username, e.password = username or e.username, password or e.password
    try:
        _start_registry(e, delete)
    except BaseException:
        stop(e)
        raise
    return e


def stop(e: Environment) -> None:
    """Stop every process, unmount what the daemon left mounted, and remove the temp dir."""
    if e.daemon is not None:
        e.daemon.stop()
    for p in reversed(e.procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for mount in reversed(_mounts_under(e.root)):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(e.root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(root))]


def _start_dockerd(e: Environment) -> None:
    """runner's own private daemon (the embedded engine), with its folder the environment's."""
    e.daemon = PrivateDaemon(e.root)
    e.daemon.start(timeout=60)
    assert e.daemon.host == e.docker_host


def _start_registry(e: Environment, delete: bool = True) -> None:
    port = free_port()
    e.registry = f"127.0.0.1:{port}"
    htpasswd = subprocess.run(["htpasswd", "-niB", e.username], input=e.password, capture_output=True, text=True,
                              check=True).stdout
    (e.root / "htpasswd").write_text(htpasswd)
    (e.root / "registry.yml").write_text(f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {e.root}/registry}}
  delete: {{enabled: {"true" if delete else "false"}}}
http: {{addr: "127.0.0.1:{port}"}}
auth:
  htpasswd: {{realm: runner-e2e, path: {e.root}/htpasswd}}
""")
    log = open(e.root / "registry.log", "w")
    e.procs.append(subprocess.Popen(["docker-registry", "serve", str(e.root / "registry.yml")], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True))
    wait_for(lambda: port_open(port), "the registry")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tar_gz(files: dict[str, tuple[str, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _start_index(e: Environment) -> None:
    """The fixture's package index: a toolkit, and echo-serve per version and arch."""
    pkgs = e.root / "index"
    pkgs.mkdir()
    (pkgs / "demotool-1.0.tar.gz").write_bytes(_tar_gz({"bin/demotool": ("#!/bin/sh\necho 'demotool 1.0'\n", 0o755)}))
    for version in ("0.1.0", "0.2.0", "0.3.0"):
        for arch in ("amd64", "arm64"):
            reported = "0.2.9" if (version, arch) == ("0.3.0", "arm64") else version  # the deliberate breakage
            # its Python distribution's metadata, as an installer leaves it (what an SBOM reads)
            meta = f"Metadata-Version: 2.1\nName: echo-serve\nVersion: {version}\nSummary: the fixture's service\n\n"
            (pkgs / f"echo-{version}-{arch}.tar.gz").write_bytes(
                _tar_gz({"bin/echo-serve": (ECHO_SERVE, 0o755), "VERSION": (reported + "\n", 0o644),
                         f"lib/python3.11/site-packages/echo_serve-{version}.dist-info/METADATA": (meta, 0o644)}))
    port = free_port()
    e.index = f"http://127.0.0.1:{port}"
    e.procs.append(subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                     str(pkgs), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True))
    wait_for(lambda: port_open(port), "the package index")


def _debs(e: Environment) -> Path:
    """busybox-static and tini for arm64 from Debian's archive (the machine must know arm64)."""
    out = e.root / "debs"
    out.mkdir()
    subprocess.run(["apt-get", "download", "busybox-static:arm64", "tini:arm64"], cwd=out, check=True,
                   capture_output=True)
    root = out / "root"
    for deb in out.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _dpkg_status(debs: list[Path]) -> bytes:
    """dpkg's status entries of the Debian packages the arm64 base is made of (their control fields);
    the amd64 base is made of the host's own installed packages, whose entries dpkg-query gives."""
    if not debs:
        return subprocess.run(["dpkg-query", "-s", "busybox-static", "tini"], capture_output=True,
                              check=True).stdout
    entries = []
    for deb in debs:
        fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Source", "Maintainer"],
                                capture_output=True, text=True, check=True).stdout.strip()
        entries.append(fields.replace("\nVersion:", "\nStatus: install ok installed\nVersion:", 1))
    return ("\n\n".join(entries) + "\n").encode()


def _rootfs(busybox: Path, tini: Path, status: bytes = b"", extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "usr/bin", "usr/local/bin", "etc", "tmp", "root", "var/cache", "opt", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        tar.add(tini, "usr/bin/tini")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        # the recipes' SHELL is bash; busybox ash takes the same -eo pipefail -c
        bash = b"#!/bin/sh\nexec /bin/sh \"$@\"\n"
        info = tarfile.TarInfo("bin/bash")
        info.size, info.mode = len(bash), 0o755
        tar.addfile(info, io.BytesIO(bash))
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
        for d in ("var/lib", "var/lib/dpkg"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        extras = {name: text.encode() for name, text in (extra or {}).items()}
        for name, data in (("var/lib/dpkg/status", status), ("etc/os-release", b'ID=debian\nVERSION_ID="12"\n'),
                           *extras.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _import_bases(e: Environment) -> None:
    arm = _debs(e)
    sources = {"amd64": (static_busybox(), Path("/usr/bin/tini-static")),
               "arm64": (arm / "bin/busybox", arm / "usr/bin/tini-static")}
    for arch, (busybox, tini) in sources.items():
        if not tini.exists():
            raise RuntimeError(f"{tini} missing: install Debian's tini package")
        # FROM scratch + ADD (no RUN, no pull) gives an image whose config names its platform, which
        # BuildKit needs to use it locally; `docker import --platform` only works on experimental daemons.
        # The builder image is another base (the recipe builds a tool on it for every echo image).
        status = _dpkg_status(sorted((arm.parent).glob("*.deb")) if arch == "arm64" else [])
        for name, extra in (("demo-base", {}), ("demo-builder", {"etc/demo-builder": "demo-builder 1.0.0\n"})):
            ctx = e.root / f"{name}-{arch}"
            ctx.mkdir()
            (ctx / "rootfs.tar").write_bytes(_rootfs(busybox, tini, status, extra))
            (ctx / "Dockerfile").write_text("FROM scratch\nADD rootfs.tar /\n")
            subprocess.run([DOCKER, "build", "--platform", f"linux/{arch}", "-t", f"runner-fixture/{name}:1.0.0-{arch}",
                            str(ctx)], env={**e.env(), "DOCKER_BUILDKIT": "1"}, check=True, capture_output=True)
