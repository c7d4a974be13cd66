"""Reading and replacing the files a user hands us, safely: regular files only (never a pipe or a
device that would hang or never end), a size cap, UTF-8 with a clear error, and writes that are atomic,
keep the file's mode and refuse to follow a link or replace a device.

Cache files (what runner may forget) go through read_cache/write_cache: the same bounded reader, links
never followed, unpredictable temp names, atomic replaces, and an envelope naming the runner that wrote
them, so a file from another runner version (or one that does not read back) is simply a miss."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from runner.model.errors import UserError

MAX_INPUT = 16 * 1024 * 1024  # no matrix, spec or catalog comes near this
MAX_CACHE = 16 * 1024 * 1024  # no cache file comes near this (smoke outputs are capped far below)


def project_folder() -> Path:
    """The project runner works on: $RUNNER_MATRIX's folder, else the nearest folder upward from the
    working directory holding matrix.yaml and pack/, else the checkout runner is installed from."""
    if env := os.environ.get("RUNNER_MATRIX"):
        return Path(env).parent
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "matrix.yaml").is_file() and (folder / "pack").is_dir():
            return folder
    return Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    """Where runner keeps what it may forget: $RUNNER_CACHE_DIR, else a folder of this project's own
    under ~/.cache/runner/projects (keyed by the checkout's path, so another checkout starts cold)."""
    if base := os.environ.get("RUNNER_CACHE_DIR"):
        return Path(base)
    folder = project_folder().resolve()
    key = f"{folder.name[:40]}-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runner" / "projects" / key


@functools.cache
def runner_fingerprint() -> str:
    """Which runner this is: a digest of its own source files (its version among them). Caches are
    keyed by it, so what one runner validated or ran is never trusted by another (an upgrade, an edit)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        h.update(b"\0" + str(file.relative_to(root)).encode() + b"\0")
        try:
            h.update(file.read_bytes())
        except OSError:
            h.update(b"unreadable")
    return h.hexdigest()[:32]


def read_cache(path: Path, key: str, limit: int = MAX_CACHE) -> Any:
    """The data a cache file holds for `key`, written by this very runner; None for anything else:
    missing, a link or special file, too large, not UTF-8 JSON, another key or another runner."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        envelope = json.loads(raw) if len(raw) <= limit else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(envelope, dict) or envelope.get("runner") != runner_fingerprint() or envelope.get("key") != key:
        return None
    return envelope.get("data")


def write_cache(path: Path, key: str, data: Any) -> None:
    """Remember `data` for `key` in one atomic replace, through an unpredictable temp name in a folder
    only this user may enter; a cache that cannot be written only costs time."""
    try:
        text = json.dumps({"runner": runner_fingerprint(), "key": key, "data": data})
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (OSError, TypeError, ValueError):
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def read_text(path: Path, what: str, limit: int = MAX_INPUT) -> str:
    """The text of a regular file, or a UserError that says what is wrong with it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{what} not found", value=str(path)) from None
    except OSError as e:
        raise UserError(f"cannot read the {what} {path}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"the {what} must be a regular file", value=str(path), hint=_kind(info.st_mode))
        if info.st_size > limit:
            raise UserError(f"the {what} is too large ({info.st_size} bytes)", value=str(path),
                            allowed=f"at most {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UserError(f"the {what} is too large", value=str(path), allowed=f"at most {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: the {what} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None


def check_writable(path: Path, what: str, need: int = 0) -> None:
    """Refuse, before anything else happens, a path that cannot be replaced safely: a link or special
    file, a folder that is missing, read-only or takes no new file (/proc), or too full for `need` bytes
    (a file of that size is made beside it and removed)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise UserError(f"cannot use the {what} {path}: {e.strerror}") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UserError(f"the {what} must be a regular file, not a link or special file", value=str(path),
                        hint=_kind(info.st_mode))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"the folder of the {what} does not exist", value=str(folder))
    if not os.access(folder, os.W_OK | os.X_OK) or (info is not None and not os.access(path, os.W_OK)):
        raise UserError(f"the {what} is not writable", value=str(path))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        try:
            _reserve(fd, folder, need)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write the {what} {path}: {e.strerror}", hint=f"{folder} takes no new file of "
                        f"{max(need, 1)} bytes") from None


def _reserve(fd: int, folder: Path, need: int) -> None:
    """Claim `need` bytes for a file (ENOSPC when the file system lacks them)."""
    if need <= 0:
        return
    try:
        os.posix_fallocate(fd, 0, need)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        fs = os.statvfs(folder)  # a file system that cannot allocate ahead: its free blocks then
        if fs.f_bavail * fs.f_frsize < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None


def write_atomic(path: Path, text: str, what: str) -> None:
    """Replace a file in one rename: readers see the old or the new text, never half of one. The
    file's mode is kept; a link or a device at the path is refused."""
    check_writable(path, what)
    mode = stat.S_IMODE(os.lstat(path).st_mode) if path.exists() else 0o644
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    except OSError as e:
        raise UserError(f"cannot write the {what} {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write the {what} {path}: {e.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return f"it is {name}"
    return "it is not a regular file"


class JsonCache:
    """JSON records kept by key in one folder of the cache (cache_root()/<name>), a file each: written
    atomically and keyed to this runner (write_cache), read bounded and checked (read_cache). The
    build records, smoke memory, resolver answers, patch checks and the validated project use it."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / name

    def file(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> Any:
        """What `put` kept for the key, or None (missing, odd, another runner's, another key's)."""
        return read_cache(self.file(key), key)

    def get_dict(self, key: str) -> dict | None:
        data = self.get(key)
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: Any) -> None:
        write_cache(self.file(key), key, data)


def read_validated(path: Path, what: str, validate, kind: str, hint: str):
    """A JSON file read and validated (a pydantic `validate_json`); anything else is a UserError naming
    the file as not a KIND, with HINT."""
    from runner.model.errors import UserError

    text = read_text(path, what)
    try:
        return validate(text)
    except ValueError as e:
        raise UserError(f"{path}: not a {kind}: {str(e).splitlines()[0]}", hint=hint) from None
