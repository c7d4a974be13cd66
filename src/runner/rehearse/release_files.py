"""Release files a rehearsal's source mirror makes from the package index's wheels, as declared in
runner.rehearse.substitutions.RELEASE_FILES: CMake's GitHub release tarball, made from the index's
cmake wheel, which carries CMake's own Linux build. Each file is made once into the mirror's file
area (files/<host>/<path>), so the recipe's own `curl URL | tar` line runs against it."""

from __future__ import annotations

import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from runner.model.naming import MACHINES
from runner.rehearse.substitutions import ReleaseFromWheel, Substitution, mirrored_elsewhere
from runner.verify.upstream import Upstreams



def make(scripts: Iterable[str], platforms: Iterable[str], files: Path,
         upstreams: Upstreams) -> tuple[dict[str, Substitution], dict[str, str]]:
    """Every declared release file the scripts download, for each platform's machine, made in `files`:
    the substitution for each URL made, and why for each URL that could not be (it then answers 404)."""
    machines = sorted({MACHINES[p] for p in platforms if p in MACHINES})
    made: dict[str, Substitution] = {}
    missing: dict[str, str] = {}
    for script in scripts:
        for m, kind in mirrored_elsewhere(script):
            if not isinstance(kind, ReleaseFromWheel):
                continue
            for machine in machines if m["arch"].startswith("$") else [m["arch"]]:
                url = url_on(m, machine)
                if url in made or url in missing:
                    continue
                try:
                    made[url] = _tarball(kind, m["version"], machine, url, files, upstreams)
                except LookupError as e:
                    missing[url] = str(e)
    return made, missing


def url_on(found: re.Match, machine: str) -> str:
    """A release file's URL as a script names it (arch `$(uname -m)` or a machine name), on a machine."""
    return found[0].replace(found["arch"], machine) if found["arch"].startswith("$") else found[0]


def _tarball(kind: ReleaseFromWheel, version: str, machine: str, url: str, files: Path,
             upstreams: Upstreams) -> Substitution:
    wheel, used = upstreams.wheel(kind.project, version, machine)
    parts = urlsplit(url)
    dest = files / parts.netloc / parts.path.lstrip("/")
    stamp = dest.with_name(dest.name + ".from")  # which wheel the file was made of: remade when that changes
    if not (dest.is_file() and stamp.is_file() and stamp.read_text() == wheel.name):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        _write(wheel, kind.data, kind.top.format(version=version, arch=machine), tmp)
        os.replace(tmp, dest)
        stamp.write_text(wheel.name)
    return kind.substitution(version, used)


def _write(wheel: Path, data: str, top: str, dest: Path) -> None:
    """The wheel's `data` folder as a gzipped tarball under `top`, keeping each file's mode."""
    with zipfile.ZipFile(wheel) as z, tarfile.open(dest, "w:gz") as tar:
        for info in z.infolist():
            if not info.filename.startswith(data) or info.is_dir():
                continue
            entry = tarfile.TarInfo(f"{top}/{info.filename[len(data):]}")
            entry.size = info.file_size
            entry.mode = (info.external_attr >> 16) & 0o7777 or 0o644
            entry.mtime = 0  # the same wheel makes the same bytes
            tar.addfile(entry, io.BytesIO(z.read(info)))
