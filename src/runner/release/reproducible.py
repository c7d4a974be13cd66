"""Reproducible images: the same inputs give the same digest on any daemon. A built image's own
layers (not its base's, which keep their published bytes) are rewritten from a `docker save`
archive with every timestamp clamped to the recipe commit's time (SOURCE_DATE_EPOCH), access and
change times dropped, entries in one fixed order; the config's created times are clamped too. The
daemon's BuildKit (Docker 20.10) knows no SOURCE_DATE_EPOCH of its own, hence the rewrite.

Caches stay out of layers by construction (cache mounts, checked by the smoke specs); what still
differs after the rewrite is reported by bench/layer_diff.py."""

from __future__ import annotations

import datetime
import hashlib
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

_DROPPED_PAX = ("atime", "ctime", "mtime")  # mtime is set again from the clamped value


def epoch_of(created: str) -> int:
    """Seconds since the epoch of an RFC 3339 `created` (the images' created label)."""
    return int(datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


def rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_layer(source: Path, dest: Path, epoch: int) -> str:
    """Write a layer tar with timestamps clamped and entries in a fixed order (a hard link after its
    target, so the archive still extracts); file contents stream through. Returns its sha256."""
    with tarfile.open(source, mode="r:") as src, tarfile.open(dest, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        members = sorted(src.getmembers(), key=lambda m: m.name)
        ordered, seen, waiting = [], set(), []
        for m in members:
            (waiting if m.islnk() and m.linkname not in seen else ordered).append(m)
            seen.add(m.name)
        for m in ordered + waiting:
            body = src.extractfile(m) if m.isreg() else None
            m.mtime = min(int(m.mtime), epoch)
            m.pax_headers = {k: v for k, v in m.pax_headers.items() if k not in _DROPPED_PAX}
            dst.addfile(m, body)
    digest = hashlib.sha256()
    with dest.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_archive(folder: Path, epoch: int, base_diff_ids: Sequence[str]) -> bool:
    """Rewrite an unpacked `docker save` archive in place (one image): its own layers and config.
    Returns whether anything changed."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest[0]
    config = json.loads((folder / entry["Config"]).read_text())
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    keep = 0
    while keep < min(len(base_diff_ids), len(diff_ids)) and diff_ids[keep] == base_diff_ids[keep]:
        keep += 1
    layers = list(entry["Layers"])
    for i in range(keep, len(layers)):
        scratch = folder / f"normalized-{i}.tar"
        digest = normalize_layer(folder / layers[i], scratch, epoch)
        (folder / digest).mkdir(exist_ok=True)
        scratch.replace(folder / digest / "layer.tar")
        layers[i], diff_ids[i] = f"{digest}/layer.tar", f"sha256:{digest}"
    stamp = rfc3339(epoch)
    config["created"] = stamp
    for h in config.get("history", []):
        h["created"] = stamp
    body = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    name = hashlib.sha256(body).hexdigest() + ".json"
    changed = name != entry["Config"]
    (folder / name).write_bytes(body)
    entry.update(Config=name, Layers=layers)
    (folder / "manifest.json").write_text(json.dumps([entry]))
    return changed
