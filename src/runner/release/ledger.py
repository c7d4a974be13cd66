"""The catalog's digests and tag history, in a file beside it: `catalog.json` stays the list of records
gpustack-runner and GPUStack parse today, and `catalog.digests.json` keeps, for every final tag that
promote points, its index digest and each platform's digest, plus every change of a final tag (a
polished re-push: old digest -> new digest, its reason and when; a discard or prune: old -> none).
`runner verify --catalog` checks tags against these pins; `runner catalog --history TAG` lists them.
Written atomically under the catalog's own lock."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from runner.model.errors import UserError

if TYPE_CHECKING:
    from runner.model.catalog import CatalogFile
    from runner.release.publish import Promotion, Repository
    from runner.release.registry import Registry


class Pin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registry: str
    index: str
    platforms: dict[str, str] = Field(default_factory=dict)


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old: str | None
    new: str | None
    reason: str
    at: str


class Ledger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: dict[str, Pin] = Field(default_factory=dict)  # docker_image (as catalog.json names it) -> pin
    history: dict[str, list[Change]] = Field(default_factory=dict)


def path_for(catalog: Path) -> Path:
    """catalog.json -> catalog.digests.json (a sibling: the catalog's parsers never see it)."""
    return catalog.with_name(f"{catalog.stem}.digests.json")


def load(path: Path) -> Ledger:
    from runner.model.files import read_text

    if not path.exists():
        return Ledger()
    try:
        return Ledger.model_validate_json(read_text(path, "catalog digests file"))
    except ValueError as e:
        raise UserError(f"{path}: not a catalog digests file: {str(e).splitlines()[0]}",
                        hint="it is written by promote, discard and prune next to the catalog") from None


def _save(path: Path, ledger: Ledger) -> None:
    from runner.model.files import write_atomic

    text = json.dumps(ledger.model_dump(), indent=1, sort_keys=True) + "\n"
    write_atomic(path, text, "catalog digests file")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def change(ledger: Ledger, image: str, pin: Pin | None, reason: str) -> bool:
    """Set (or with None, drop) an image's pin, recording the change; False when nothing changed."""
    old = ledger.images.get(image)
    if (old.index if old else None) == (pin.index if pin else None):
        if pin is not None:
            ledger.images[image] = pin
        return False
    ledger.history.setdefault(image, []).append(
        Change(old=old.index if old else None, new=pin.index if pin else None, reason=reason, at=_now()))
    if pin is None:
        ledger.images.pop(image, None)
    else:
        ledger.images[image] = pin
    return True


async def record_promotions(book: CatalogFile, registry: Registry, repo: Repository, promoted: Sequence[Promotion],
                            reason: Callable[[str, bool], str]) -> list[str]:
    """Pin each promoted final tag (its index and platform digests, read back from the registry);
    reason(tag, had_pin) says why it changed. Returns the images whose digest changed."""
    from runner.release.verification import members

    pins = {}
    for p in promoted:
        if p.skipped:
            continue
        found = await registry.manifest(repo.path, p.tag)
        if found is None:
            raise UserError(f"{repo.ref(p.tag)} vanished right after promotion")
        pins[repo.catalog_image(p.tag)] = Pin(registry=registry.host, index=found.digest,
                                             platforms={pl: d for pl, d in members(found.body, found.digest) if pl})
    return update(book, lambda ledger: [img for img, pin in pins.items()
                                        if change(ledger, img, pin, reason(img.rsplit(":", 1)[1], img in ledger.images))])


def reasons(targets: Iterable, given: str = "") -> Callable[[str, bool], str]:
    """Why a final tag changed: the reason given, else its first promotion, a polished target's
    re-push (the matrix marks it `polished`: pull again), or a re-push."""
    status = {t.tag: t.status for t in targets}

    def why(tag: str, had_pin: bool) -> str:
        if given:
            return given
        if not had_pin:
            return "first promotion"
        return "polished re-push" if status.get(tag) == "polished" else "re-push"

    return why


def record_removals(book: CatalogFile, images: Iterable[str], reason: str) -> list[str]:
    return update(book, lambda ledger: [img for img in images if change(ledger, img, None, reason)])


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The ledger's own lock (a sibling file): the catalog's lock is the release run's, held already."""
    import fcntl

    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(book: CatalogFile, edit: Callable[[Ledger], list[str]]) -> list[str]:
    path = path_for(book.path)
    with _locked(path):
        ledger = load(path)
        changed = edit(ledger)
        if changed or not path.exists():
            _save(path, ledger)
    return changed


def history(path: Path, tag: str) -> list[dict]:
    """Every recorded change of a tag (given as TAG or NAMESPACE/REPOSITORY:TAG), oldest first."""
    ledger = load(path)
    found = [(img, c) for img, changes in ledger.history.items() for c in changes
             if img == tag or img.endswith(f":{tag}")]
    return [{"image": img, **c.model_dump()} for img, c in sorted(found, key=lambda x: x[1].at)]


def pinned(path: Path, image: str) -> str:
    """The index digest the ledger pins for namespace/repository:tag ('' when none)."""
    pin = load(path).images.get(image)
    return pin.index if pin else ""
