"""Reading and replacing the files a user hands us, safely: regular files only (never a pipe or a
device that would hang or never end), a size cap, UTF-8 with a clear error, and writes that are atomic,
keep the file's mode and refuse to follow a link or replace a device."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from runner.model.errors import UserError

MAX_INPUT = 16 * 1024 * 1024  # no matrix, spec or catalog comes near this


def cache_root() -> Path:
    """Where runner keeps what it may forget: $RUNNER_CACHE_DIR, else ~/.cache/runner."""
    base = os.environ.get("RUNNER_CACHE_DIR") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runner")
    return Path(base)


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


def check_writable(path: Path, what: str) -> None:
    """Refuse, before anything else happens, a path that cannot be replaced safely."""
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


def write_atomic(path: Path, text: str, what: str) -> None:
    """Replace a file in one rename: readers see the old or the new text, never half of one. The
    file's mode is kept; a link or a device at the path is refused."""
    check_writable(path, what)
    mode = stat.S_IMODE(os.lstat(path).st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
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


def remember(folder: Path, key: str, data: dict) -> None:
    """Keep an answer under `folder` by its key, atomically; a cache that cannot be written only costs time."""
    import json

    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass


def recall(folder: Path, key: str) -> dict | None:
    """An answer kept by `remember` (None when there is none, or it does not read back)."""
    import json

    try:
        data = json.loads((folder / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
