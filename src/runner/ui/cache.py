"""runner's cache folder for this project: what each kind holds and its size, and clearing it whole.

Only the folders runner itself writes are counted and removed (never anything else that lives under
$RUNNER_CACHE_DIR). Clearing first stops the embedded engine if it was kept running, then moves every
kind into one trash folder (renames on one file system: the cache is either whole or gone, never half
there), and removes the trash; a trash an interrupted clear left behind is removed by the next one."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from runner.engines.private_daemon import PrivateDaemon
from runner.model.files import cache_root

# every folder runner writes under its cache root, and what is in it
KINDS = {
    "matrix": "validated matrices (keyed by matrix.yaml and the recipes)",
    "resolve": "uv's answers to `runner resolve`",
    "patch-checks": "patches checked against the releases' sources",
    "sources": "the releases' sdists and the git repositories made of them (source mirror)",
    "smoke": "smoke results remembered per image",
    "builds": "build records: image IDs per daemon and inputs",
    "rehearsal": "Debian root file systems of the rehearsals' stand-in bases",
    "engine": "the embedded engine: its images and BuildKit cache",
}
_TRASH = ".clearing-"


@dataclass
class Kind:
    name: str
    what: str
    path: Path
    bytes: int
    files: int


def folder_size(folder: Path) -> tuple[int, int]:
    """Bytes on disk and file count under `folder`, links not followed, hard links counted once."""
    total, count, seen = 0, 0, set()
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
                count += 1
    return total, count


def sources_folder(root: Path) -> Path:
    """Where the sources kind lives: $RUNNER_SOURCES_DIR may put it outside the cache folder."""
    return Path(os.environ.get("RUNNER_SOURCES_DIR") or root / "sources")


def kinds(root: Path | None = None) -> list[Kind]:
    """Each kind of this project's cache with its size (0 when absent)."""
    root = root or cache_root()
    out = []
    for name, what in KINDS.items():
        path = sources_folder(root) if name == "sources" else root / name
        size, count = folder_size(path) if path.is_dir() else (0, 0)
        out.append(Kind(name, what, path, size, count))
    return out


def engine(root: Path | None = None) -> PrivateDaemon:
    return PrivateDaemon((root or cache_root()) / "engine")


def clear(root: Path | None = None) -> tuple[list[Kind], list[str]]:
    """Remove this project's cache: every kind under the root (an outside $RUNNER_SOURCES_DIR is kept and
    named). Returns what was removed and notes for the user."""
    root = root or cache_root()
    notes = []
    daemon = engine(root)
    if daemon.pid():
        daemon.stop()
        notes.append("stopped the embedded engine that was kept running")
    removed = [k for k in kinds(root) if k.path.exists()]
    if sources_folder(root) != root / "sources":
        removed = [k for k in removed if k.name != "sources"]
        notes.append(f"kept {sources_folder(root)}: $RUNNER_SOURCES_DIR is outside the cache folder")
    trash = root / f"{_TRASH}{os.getpid()}"
    if removed:
        trash.mkdir(parents=True)
        for k in removed:
            k.path.rename(trash / k.name)
    for leftover in [p for p in root.glob(f"{_TRASH}*") if p.is_dir()] if root.is_dir() else []:
        shutil.rmtree(leftover, onerror=_writable_and_retry)
    if root.is_dir() and not os.environ.get("RUNNER_CACHE_DIR") and not any(root.iterdir()):
        root.rmdir()  # the per-project folder runner made itself
    return removed, notes


def _writable_and_retry(function, path, _exc) -> None:
    """rmtree's error handler: a folder without write permission (some packages ship them) is made
    writable and the removal tried again."""
    parent = Path(path).parent
    os.chmod(parent, 0o700)
    if Path(path).is_dir() and not Path(path).is_symlink():
        os.chmod(path, 0o700)
    function(path)
