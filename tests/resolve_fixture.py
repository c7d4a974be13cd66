"""A local package index standing in for the indexes this machine cannot reach (PyPI-style indexes
of PyTorch, Ascend and FlashInfer, AMD's flat folder of wheels), made from what the recipes pin
there: for every install step naming such a source, a metadata-only wheel of each package the step
pins exactly (torch 2.9.1 from the cu128 index becomes torch 2.9.1+cu128, as it is published there).
Served over loopback and reached through the mirror map ($RUNNER_MIRRORS), so `runner resolve`
proves its mechanism on those sets too. The stubs carry no requirements of their own: what they pin
is checked, what the real wheels require is not (say so where it matters)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

from runner.compose.requirements import canonical
from runner.verify.resolve import requirement_of, steps_of
from tests.e2e import infra

_LABELLED = {"torch", "torchvision", "torchaudio"}  # published with the index's local label (+cu128, +cpu)
_LABEL = re.compile(r"/(cu\d+|cpu|rocm[\d.]+|rocm-rel-[\d.]+)/?$")


def stub_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A metadata-only wheel any platform installs (py3-none-any)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = re.sub(r"[-_.]+", "_", name)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: runner-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return path


def needs(leaves, unreachable: set[str]) -> dict[str, dict[str, set[str]]]:
    """URL -> package -> versions the recipes pin in steps that name that (unreachable) source."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for leaf in leaves:
        for step in steps_of(leaf.stage):
            r = step.requirements
            urls = [u for u in (r.index_url, *r.extra_index_urls, *r.find_links) if u in unreachable]
            for p in r.packages:
                pinned = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?===?([^,;\s*]+)", requirement_of(p, step.args))
                for url in urls if pinned else ():
                    found[url][canonical(pinned[1])].add(pinned[2])
    return found


def build(root: Path, leaves, unreachable: set[str], find_links: set[str]) -> dict[str, str]:
    """Lay the stub index out under `root`; returns URL -> folder path under root (one per source)."""
    places = {}
    for url, packages in needs(leaves, unreachable).items():
        slug = hashlib.sha256(url.encode()).hexdigest()[:10]
        places[url] = slug
        label = _LABEL.search(url)
        for name, versions in packages.items():
            for version in versions:
                if name in _LABELLED and label and "+" not in version:
                    version = f"{version}+{label[1].replace('-rel-', '').replace('.', '')}"
                # an index has a page per project; a find-links folder is flat
                stub_wheel(root / slug / ("" if url in find_links else name), name, version)
    for url in unreachable - set(places):
        places[url] = hashlib.sha256(url.encode()).hexdigest()[:10]
        (root / places[url]).mkdir(parents=True, exist_ok=True)
    return places


class Served:
    """The stub index over loopback, and the $RUNNER_MIRRORS value that points the recipes at it."""

    def __init__(self, root: Path, places: dict[str, str]) -> None:
        self.port = infra.free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                      str(root), str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        infra.wait_for(lambda: infra.port_open(self.port), "the stub index")
        self.mirrors = " ".join(f"{url}=http://127.0.0.1:{self.port}/{slug}/" if url.endswith("/") else
                                f"{url}=http://127.0.0.1:{self.port}/{slug}" for url, slug in sorted(places.items()))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
