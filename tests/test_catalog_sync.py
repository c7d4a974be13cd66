"""The catalog and the registry never drift: promote and discard are stopped at every registry step (and
at the catalog's own rename), and the next run finds a catalog that lists exactly the images whose final
tag is in the registry; a disk too full for the new catalog stops the run before the registry changes;
a run waiting for another's lock says so and can be cancelled."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import anyio
import pytest

from runner.compose.project import load_project
from runner.model import catalog
from runner.model.errors import UserError
from runner.model.naming import format_tag
from runner.release import publish as flow
from runner.release.catalog_sync import CatalogSync
from runner.release.registry import Manifest

FIXTURE = Path(__file__).parent / "fixtures" / "e2e" / "matrix.yaml"
REPO = flow.Repository("registry.example:5000", "ns", "runner")
INDEX = "application/vnd.oci.image.index.v1+json"


class Stopped(Exception):
    """The run stops here, as a kill would stop it (the catalog's code gets no say)."""


class MemoryRegistry:
    """Tags to manifests in memory; with `stop_at` set, the stop_at-th call raises Stopped."""

    host = "registry.example:5000"

    def __init__(self) -> None:
        self.tags: dict[str, bytes] = {}
        self.calls, self.stop_at = 0, 0

    def _step(self) -> None:
        self.calls += 1
        if self.stop_at and self.calls == self.stop_at:
            raise Stopped(f"stopped at registry call {self.calls}")

    async def manifest(self, repo: str, ref: str) -> Manifest | None:
        self._step()
        body = self.tags.get(ref)
        return Manifest(body, INDEX, "sha256:" + hashlib.sha256(body).hexdigest()) if body is not None else None

    async def digest(self, repo: str, ref: str) -> str | None:
        found = await self.manifest(repo, ref)
        return found.digest if found else None

    async def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        self._step()
        self.tags[ref] = body
        return "sha256:" + hashlib.sha256(body).hexdigest()

    async def delete_supported(self, repo: str) -> bool:
        self._step()
        return True

    async def delete_tag(self, repo: str, tag: str) -> None:
        self._step()
        self.tags.pop(tag, None)


def _targets():
    return load_project(FIXTURE).targets[:2]


def _records(ts):
    return catalog.records(ts, REPO.catalog_image)


def _published(reg: MemoryRegistry) -> None:
    for t in _targets():
        reg.tags[format_tag(t, dev=True)] = f"index of {t.tag}".encode()
        for p in t.platforms:
            reg.tags[format_tag(t, p)] = f"{t.tag} {p}".encode()


def _in_step(reg: MemoryRegistry, path: Path) -> None:
    """The catalog lists exactly the images whose final tag is in the registry, with every platform."""
    listed = {r.docker_image for r in catalog.load(path)} if path.exists() else set()
    final = {REPO.catalog_image(t.tag) for t in _targets() if t.tag in reg.tags}
    assert listed == final, (listed, final)
    if path.exists():
        assert len(catalog.load(path)) == sum(len(t.platforms) for t in _targets() if t.tag in reg.tags)


async def _promote(reg, path):
    return await flow.promote(_targets(), reg, REPO, catalog.CatalogFile(path), _records)


async def _discard(reg, path):
    return await flow.discard(_targets(), reg, REPO, catalog.CatalogFile(path))


def _steps(run, prepare) -> int:
    reg, path = MemoryRegistry(), Path(os.environ["RUNNER_CACHE_DIR"]) / "count.json"
    prepare(reg, path)
    anyio.run(run, reg, path)
    return reg.calls


def _promoted(reg, path):
    _published(reg)


def _to_discard(reg, path):
    _published(reg)
    anyio.run(_promote, reg, path)
    reg.calls = 0


@pytest.mark.parametrize("op", ["promote", "discard"])
def test_a_run_stopped_at_any_step_is_repaired_by_the_next(tmp_path, op):
    run, prepare = (_promote, _promoted) if op == "promote" else (_discard, _to_discard)
    steps = _steps(run, prepare)
    assert steps >= 4
    for stop_at in range(1, steps + 1):
        reg, path = MemoryRegistry(), tmp_path / f"{op}-{stop_at}" / "catalog.json"
        path.parent.mkdir()
        prepare(reg, path)
        reg.stop_at = stop_at
        with pytest.raises(Stopped):
            anyio.run(run, reg, path)
        reg.stop_at = 0
        listed = {r.docker_image for r in catalog.load(path)} if path.exists() else set()
        assert listed <= {REPO.catalog_image(t.tag) for t in _targets() if t.tag in reg.tags}  # never a missing one
        # the next run on this catalog, whatever it is, starts from a catalog in step with the registry
        anyio.run(_repaired, reg, path)
        _in_step(reg, path)
        anyio.run(run, reg, path)  # and the same command again finishes the job
        _in_step(reg, path)
        assert all(t.tag in reg.tags for t in _targets()) == (op == "promote")
        assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".catalog.json.")
                    and not p.name.endswith(".lock")], "a journal or staged catalog was left"


async def _repaired(reg, path):
    async with CatalogSync(catalog.CatalogFile(path), reg, REPO) as sync:
        return sync.repaired


def test_a_run_stopped_at_the_catalog_rename_is_repaired(tmp_path, monkeypatch):
    reg, path = MemoryRegistry(), tmp_path / "catalog.json"
    _published(reg)
    real = os.replace

    def fail_catalog(src, dst):
        if Path(dst) == path:
            raise Stopped("stopped at the catalog rename")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_catalog)
    with pytest.raises(Stopped):
        anyio.run(_promote, reg, path)
    monkeypatch.setattr(os, "replace", real)
    assert not path.exists() and (tmp_path / ".catalog.json.journal").exists()
    assert sorted(anyio.run(_repaired, reg, path)) == sorted(REPO.catalog_image(t.tag) for t in _targets())
    _in_step(reg, path)


def test_a_disk_too_full_for_the_catalog_stops_before_the_registry_changes(tmp_path, monkeypatch):
    reg, path = MemoryRegistry(), tmp_path / "catalog.json"
    _published(reg)
    before = dict(reg.tags)

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UserError, match="No space left on device"):
        anyio.run(_promote, reg, path)
    assert reg.tags == before and not path.exists()
    assert not (tmp_path / ".catalog.json.journal").exists()


def test_waiting_for_the_lock_says_so_and_can_be_cancelled(tmp_path):
    import fcntl

    path = tmp_path / "catalog.json"
    lock = os.open(tmp_path / ".catalog.json.lock", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(lock, b"4242")
    fcntl.flock(lock, fcntl.LOCK_EX)
    heard: list[str] = []

    async def main() -> float:
        start = anyio.current_time()
        with anyio.move_on_after(2.5):  # SIGTERM cancels the same way
            async with CatalogSync(catalog.CatalogFile(path, notify=heard.append), MemoryRegistry(), REPO):
                raise AssertionError("the lock was taken twice")
        return anyio.current_time() - start

    try:
        waited = anyio.run(main)
    finally:
        os.close(lock)
    assert 2.4 < waited < 4, waited
    assert heard and "held by process 4242" in heard[0]


def test_an_unreadable_journal_stops_the_run_with_what_to_do(tmp_path):
    path = tmp_path / "catalog.json"
    (tmp_path / ".catalog.json.journal").write_text("{not json")
    with pytest.raises(UserError, match="journal .* cannot be read.*by hand"):
        anyio.run(_repaired, MemoryRegistry(), path)


def test_the_catalog_refuses_a_string_for_a_boolean(tmp_path):
    path = tmp_path / "catalog.json"
    record = _records(_targets())[0].model_dump()
    path.write_text(json.dumps([{**record, "deprecated": "yes"}]))
    with pytest.raises(UserError, match="not a runner catalog"):
        catalog.load(path)


def test_a_catalog_staged_by_a_killed_run_is_removed_by_the_next(tmp_path):
    path = tmp_path / "catalog.json"
    staged = tmp_path / ".catalog.json.k1ll3d.new"  # what SIGKILL leaves between staging and the rename
    staged.write_text("[]")
    anyio.run(_repaired, MemoryRegistry(), path)
    assert not staged.exists()
