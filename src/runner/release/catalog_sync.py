"""A catalog file kept in step with the registry through full disks and killed runs.

Promote, discard and prune hold the catalog's lock for their whole run (waiting for another run's lock
without blocking the event loop, so SIGTERM still ends the wait, and saying who holds it). Before the
first registry change they write the new catalog beside the old one (so a full or read-only disk is
found while nothing has changed yet) and a journal naming every image the run may change with the
records it has while its final tag exists. One rename puts the new catalog in place: after the registry
changes that add images (promote), before those that remove them (discard, prune), so at no moment does
the catalog name an image the registry lacks. The journal is removed when the run ends well; a run
killed at any point leaves it behind, and the next run on that catalog repairs it first: each journaled
image keeps its records exactly when its final tag is in the registry."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from runner.model.errors import UserError
from runner.model.files import check_writable, read_text

if TYPE_CHECKING:
    from runner.model.catalog import CatalogFile, RunnerRecord
    from runner.release.publish import Repository
    from runner.release.registry import Registry

LOCK_WAIT = 600.0  # seconds to wait for another run's lock


class CatalogSync:
    """One run's hold on a catalog file (see the module docstring); `catalog` None: nothing to keep."""

    def __init__(self, catalog: CatalogFile | None, registry: Registry, repo: Repository,
                 wait_seconds: float = LOCK_WAIT) -> None:
        self.catalog, self.registry, self.repo, self.wait_seconds = catalog, registry, repo, wait_seconds
        self.repaired: list[str] = []  # images an interrupted run had left, put right
        self._fd: int | None = None
        self._pending: Path | None = None
        self._committed = False

    @property
    def journal(self) -> Path:
        assert self.catalog is not None
        return self.catalog.path.with_name(f".{self.catalog.path.name}.journal")

    def _say(self, message: str) -> None:
        if self.catalog is not None and self.catalog.notify is not None:
            self.catalog.notify(message)

    async def __aenter__(self) -> CatalogSync:
        if self.catalog is None:
            return self
        self.catalog.check()
        await self._lock()
        try:
            for stale in self.catalog.path.parent.glob(f".{self.catalog.path.name}.*.new"):
                stale.unlink(missing_ok=True)  # staged by a run that was killed (we hold the lock: none is staging now)
            await self._repair()
        except BaseException:
            self._unlock()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self._pending is not None:
            self._pending.unlink(missing_ok=True)
        if kind is None and self._committed and self.catalog is not None:
            self.journal.unlink(missing_ok=True)  # every registry change of the run is done
        self._unlock()

    async def _lock(self) -> None:
        import fcntl

        assert self.catalog is not None
        lock_path = self.catalog.path.with_name(f".{self.catalog.path.name}.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise UserError(f"cannot create the catalog lock {lock_path}: {e.strerror}") from None
        waited = 0.0
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if waited >= self.wait_seconds:
                        raise UserError(f"the catalog {self.catalog.path} stayed locked by another run for "
                                        f"{self.wait_seconds:.0f}s") from None
                    if waited in (1.0, 30.0) or (waited > 30 and waited % 60 == 0):
                        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another run"
                        self._say(f"waiting for the catalog lock of {self.catalog.path}, held by process {holder} "
                                  f"({waited:.0f}s so far, at most {self.wait_seconds:.0f}s)")
                    await anyio.sleep(0.25)
                    waited += 0.25
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    async def _repair(self) -> None:
        """Put right what a killed run left: each journaled image keeps its records exactly when its
        final tag is in the registry."""
        if not self.journal.exists():
            return
        from runner.model import catalog as catalog_mod
        try:
            images = json.loads(read_text(self.journal, "catalog journal"))["images"]
            entries = {image: [catalog_mod.RunnerRecord(**r) for r in records] for image, records in images.items()}
        except (UserError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"the catalog journal {self.journal} cannot be read: {e}",
                            hint="check the catalog against the registry by hand, then remove the journal") from None
        present = {}
        for image in entries:
            tag = image.rsplit(":", 1)[1]
            present[image] = await self.registry.digest(self.repo.path, tag) is not None
        add = [r for image, records in entries.items() if present[image] for r in records]
        self._write(self._changed(add, lambda r: r.docker_image in entries))
        self.journal.unlink()
        self.repaired = sorted(entries)
        self._say(f"repaired the catalog {self.catalog.path} after an interrupted run: "
                  f"{sum(present.values())} of {len(entries)} images kept (those whose final tag is in the registry)")

    def _changed(self, add: Sequence[RunnerRecord], drop: Callable[[RunnerRecord], bool] | None) -> str:
        from runner.model import catalog as catalog_mod  # the catalog models load only where a catalog is kept

        assert self.catalog is not None
        current = catalog_mod.load(self.catalog.path) if self.catalog.path.exists() else []
        keys = {(r.docker_image, r.platform) for r in add}
        keep = [r for r in current if not (drop and drop(r)) and (r.docker_image, r.platform) not in keys]
        return catalog_mod.dump(keep + list(add))

    def expect(self, add: Sequence[RunnerRecord] = (), drop: Sequence[str] = ()) -> None:
        """Before the first registry change: the catalog this run will leave (with `add`, without the
        images in `drop`) written beside the old one, and the journal. Refuses (UserError) when the disk
        cannot take them: nothing has changed yet."""
        if self.catalog is None:
            return
        from runner.model import catalog as catalog_mod

        gone = set(drop)
        current = catalog_mod.load(self.catalog.path) if self.catalog.path.exists() else []
        images: dict[str, list[dict]] = {i: [r.model_dump() for r in current if r.docker_image == i] for i in gone}
        for r in add:
            images.setdefault(r.docker_image, []).append(r.model_dump())
        text = self._changed(add, lambda r: r.docker_image in gone)
        check_writable(self.catalog.path, "catalog file", need=2 * len(text) + 65536)
        self._pending = self._stage(self.catalog.path, text)
        journal = self._stage(self.journal, json.dumps({"images": images}))
        os.replace(journal, self.journal)
        _sync_folder(self.journal.parent)

    def commit(self) -> None:
        """The new catalog in place (one rename): after the registry changes that add images, before
        those that remove them, so the catalog never names an image the registry lacks. The journal
        stays until the run ends well."""
        if self.catalog is None or self._pending is None:
            return
        self._put(self._pending)
        self._pending, self._committed = None, True

    def _write(self, text: str) -> None:
        assert self.catalog is not None
        self._put(self._stage(self.catalog.path, text))

    def _put(self, staged: Path) -> None:
        """A staged catalog in place of the old one, with the old one's mode."""
        assert self.catalog is not None
        mode = (self.catalog.path.stat().st_mode & 0o7777) if self.catalog.path.exists() else 0o644
        os.chmod(staged, mode)
        os.replace(staged, self.catalog.path)
        _sync_folder(self.catalog.path.parent)

    @staticmethod
    def _stage(path: Path, text: str) -> Path:
        """`text` in a new file beside `path`, on disk (fsync'd); the UserError of a full disk."""
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
        except OSError as e:
            raise UserError(f"cannot write beside {path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise UserError(f"cannot write beside {path}: {e.strerror}; nothing was changed") from None
        return Path(tmp)


def _sync_folder(folder: Path) -> None:
    """A rename survives a crash once its folder is on disk too."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
