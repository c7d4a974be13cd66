"""What the package index has that the matrix does not: new releases of the services the matrix
builds, proposed as matrix lines (the newest patch of each newer minor series, in front of the rows
that carry a service's newest version today), and newer releases of the pins that matter.

Given the index's answers (runner.verify.package_index reads them), everything here is offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from runner.compose.matrix_edit import Insertion, entry_text
from runner.model.catalog import RunnerRecord

SERVICE_PACKAGES = {"vllm": "vllm", "sglang": "sglang", "voxbox": "vox-box"}  # service -> its index package
# a service release reaches a backend only once the backend's own plugin has that series
COMPANIONS = {("cann", "vllm"): "vllm-ascend"}
PINS = ("lmcache", "vllm-omni", "ray")  # what recipes pin per service version (pack/<backend>/recipe.py)
TORCH_LINES = ("cuda", "rocm")  # torch is built per CUDA and ROCm line
PRERELEASES = frozenset({"vllm-ascend"})  # releases only as rc for most series
# how many release parts make a series: vLLM's 0.15.x is one; SGLang releases as 0.5.9, 0.5.10... each its own
SERIES_PARTS = {"sglang": 3, "voxbox": 3}


def index_packages() -> list[tuple[str, bool]]:
    """(package, pre-releases too) for every package outdated asks the index about."""
    names = [*SERVICE_PACKAGES.values(), *COMPANIONS.values(), *PINS, "torch"]
    return [(n, n in PRERELEASES) for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class Proposal:
    """New versions of a service for one backend release (one matrix list, newest first)."""

    backend: str
    release: str  # e.g. 12.9.1, or 8.5.0/a3
    service: str
    versions: tuple[str, ...]
    insertion: Insertion

    def to_json(self) -> dict:
        return {"backend": self.backend, "release": self.release, "service": self.service,
                "versions": list(self.versions), "entries": list(self.insertion.entries)}


@dataclass(frozen=True)
class NewerPin:
    """A pinned package with a newer release on the index."""

    package: str
    scope: str  # all, or the backend line (cuda12.8)
    pinned: str
    newest: str

    def to_json(self) -> dict:
        return {"package": self.package, "scope": self.scope, "pinned": self.pinned, "newest": self.newest}


@dataclass
class Outdated:
    """Everything newer on the index, and what could not be checked from here."""

    proposals: list[Proposal] = field(default_factory=list)
    pins: list[NewerPin] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # releases held back, and why
    not_checked: list[str] = field(default_factory=list)
    newest: dict[str, str] = field(default_factory=dict)  # package -> newest release on the index

    @property
    def anything_newer(self) -> bool:
        return bool(self.proposals or self.pins)


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _entry_version(entry: object) -> str:
    return str(entry["version"] if isinstance(entry, dict) else entry)


def _entry_active(entry: object) -> bool:
    return not (isinstance(entry, dict) and entry.get("status") == "deprecated")


def newer_series(released: Iterable[Version], than: Version, parts: int = 2) -> list[Version]:
    """The newest final release of each series (the first `parts` release numbers) newer than `than`,
    newest first."""
    best: dict[tuple[int, ...], Version] = {}
    for v in released:
        if v.is_prerelease or v.is_devrelease or v <= than:
            continue
        series = v.release[:parts]
        if series not in best or v > best[series]:
            best[series] = v
    return sorted(best.values(), reverse=True)


def _vendor_based(backend: Mapping, namespace: str, repository: str) -> bool:
    """Builds on the vendor's images copied in under our own name: new versions wait for the vendor."""
    templates = [backend.get("base_image", "")] + [r.get("base_image", "") for r in backend.get("releases", [])]
    return any(str(t).startswith(f"{namespace}/{repository}:") for t in templates if t)


def propose(data: Mapping, index: Mapping[str, list[Version]], services: Iterable[str] | None = None) -> Outdated:
    """Matrix lines for every newer service release (data: matrix.yaml as parsed; index: package ->
    releases, newest first; services: only these)."""
    out = Outdated(newest={name: str(found[0]) for name, found in index.items() if found})
    namespace, repository = str(data.get("namespace", "")), str(data.get("repository", ""))
    wanted = set(services or SERVICE_PACKAGES)
    for name, backend in data.get("backends", {}).items():
        releases = backend.get("releases", [])
        present = {s for r in releases for s in r.get("services", {})} & wanted & set(SERVICE_PACKAGES)
        if present and _vendor_based(backend, namespace, repository):
            out.not_checked.append(f"{name}: new {', '.join(sorted(present))} releases wait for the vendor's "
                                   f"base images ({backend.get('base_image')}), not read from the package index")
            continue
        for service in sorted(present):
            out.proposals += _service_proposals(name, releases, service, index, out.waiting)
    return out


def _service_proposals(backend: str, releases: list, service: str, index: Mapping[str, list[Version]],
                       waiting: list[str]) -> list[Proposal]:
    entries = [(i, e) for i, r in enumerate(releases) for e in r.get("services", {}).get(service, [])]
    known = [v for _, e in entries if (v := _version(_entry_version(e)))]
    if not known:
        return []
    newest = max(known)
    leading = sorted({i for i, e in entries if _entry_active(e) and _version(_entry_version(e)) == newest})
    if not leading:  # every row of the newest version is deprecated: the service is retired here
        return []
    found = newer_series(index.get(SERVICE_PACKAGES[service], []), newest, SERIES_PARTS.get(service, 2))
    if companion := COMPANIONS.get((backend, service)):
        series = {v.release[:2] for v in index.get(companion, [])}
        held = [v for v in found if v.release[:2] not in series]
        waiting += [f"{backend}: {service} {v} waits for a {companion} {v.major}.{v.minor} release" for v in held]
        found = [v for v in found if v not in held]
    if not found:
        return []
    out = []
    for i in leading:
        release = releases[i]
        current = release["services"][service]
        label = str(release.get("version")) + (f"/{release['variant']}" if release.get("variant") else "")
        entries_text = tuple(entry_text(str(v), current[0]) for v in found)
        path = ("backends", backend, "releases", i, "services", service)
        out.append(Proposal(backend, label, service, tuple(map(str, found)), Insertion(path, entries_text)))
    return out


def _highest(pinned: str) -> Version | None:
    """The version a pin names: exact, or the highest bound of a range (>=2.47.1,<=2.48.0)."""
    if (v := _version(pinned)) is not None:
        return Version(v.public)
    try:
        bounds = [Version(s.version) for s in SpecifierSet(pinned) if _version(s.version)]
    except InvalidSpecifier:
        return None
    return max(bounds, default=None)


def newer_pins(records: Iterable[RunnerRecord], index: Mapping[str, list[Version]], out: Outdated) -> None:
    """Pins of PINS over the whole catalog, and torch per CUDA/ROCm line, that the index has newer."""
    scopes: dict[tuple[str, str], set[str]] = {}
    for r in records:
        for package, pinned in (r.dependencies or {}).items():
            if package in PINS:
                scopes.setdefault((package, "all"), set()).add(pinned)
            elif package == "torch" and r.backend in TORCH_LINES:
                scopes.setdefault((package, f"{r.backend}{r.backend_version}"), set()).add(pinned)
    for (package, scope), pins in sorted(scopes.items()):
        finals = [v for v in index.get(package, []) if not v.is_prerelease and not v.is_devrelease]
        if not finals:
            continue
        versions = {p: v for p in pins if (v := _highest(p)) is not None}
        if commits := sorted(pins - versions.keys()):
            out.not_checked.append(f"{package}: pinned by git commit ({', '.join(commits)}); which release a "
                                   "commit belongs to is not checked here (the source host is not reachable)")
        if versions:
            pinned, top = max(versions.items(), key=lambda kv: kv[1])
            if finals[0] > top:
                out.pins.append(NewerPin(package, scope, pinned, str(finals[0])))
    if any(p.package == "torch" for p in out.pins):
        out.not_checked.append("torch per CUDA/ROCm line: the PyTorch wheel indexes are not reachable here; "
                               "the newest torch on the package index is compared instead")
