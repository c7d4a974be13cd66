"""A project: matrix.yaml plus pack/, validated together, with its targets and image-name parser.

Validation (YAML, pydantic, recipes) costs more than everything after it, so the validated result is
cached under $RUNNER_CACHE_DIR (default ~/.cache/runner), keyed by the bytes of matrix.yaml and of
every pack/*/recipe.py and by runner's own source (a cache another runner wrote is never read); a
cached file is read bounded and type-checked, and anything odd is validated again. Any edit to either
misses the cache. RUNNER_NO_CACHE=1 turns it off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from runner.model.errors import Where
from runner.model.naming import PLATFORMS, ImageParser, format_image
from runner.model.targets import Selection, Target

_CACHE_FORMAT = 4


@dataclass
class Project:
    """Everything derived from one matrix file and the pack/ folder beside it."""

    matrix_path: Path
    pack_path: Path
    namespace: str
    repository: str
    variants: dict[str, list[str]]  # backend -> variants
    services: dict[str, list[str]]  # backend -> services its recipe builds
    targets: list[Target]
    registry: str = ""
    mirrors: dict[str, str] = field(default_factory=dict)  # matrix.yaml's; see mirror_map()
    _recipes: dict | None = field(default=None, repr=False)

    def mirror_map(self):
        """The URL rewrites engines and `runner resolve` apply: matrix.yaml's, then $RUNNER_MIRRORS."""
        from runner.compose.mirrors import mirrors

        return mirrors(self.mirrors)

    @property
    def recipes(self) -> dict:
        """The recipes of pack/, imported on first use (planning needs them, listing does not)."""
        if self._recipes is None:
            from runner.compose.recipes import load_recipes

            self._recipes = load_recipes(self.pack_path)
        return self._recipes

    @cached_property
    def parser(self) -> ImageParser:
        """Reads image references with this project's backends, variants and services."""
        services = {s for ss in self.services.values() for s in ss}
        return ImageParser(self.variants, services, PLATFORMS)

    def select(self, selection: Selection) -> list[Target]:
        """The targets a selection keeps; refuses names that match nothing in the matrix, and a
        selection that keeps no target."""
        from runner.model.errors import UserError

        selection.check_names(self.targets)
        targets = selection.apply(self.targets)
        if not targets:
            raise UserError(f"the filters select no target ({selection.describe()})",
                            hint="list the targets with `runner matrix` or `dagger call select matrix`")
        return targets

    def target(self, reference: str) -> Target:
        """The matrix target an image reference or tag names (any platform or -dev suffix)."""
        from runner.model.errors import UserError

        p = self.parser.parse(reference)
        wanted = (p.backend, p.backend_version, p.backend_variant, p.service, p.service_version)
        for t in self.targets:
            if (t.backend, t.backend_version, t.variant, t.service, t.service_version) == wanted:
                return t
        raise UserError("no such target in the matrix", value=p.tag, hint="run `runner matrix --format tags`")

    def leaf_stage(self, reference: str, platform: str = ""):
        """The final stage of a target on a platform (default: the reference's, else the target's first)."""
        from runner.model.errors import UserError
        from runner.compose.plan import compose

        t = self.target(reference)
        platform = platform or self.parser.parse(reference).platform or t.platforms[0]
        if platform not in t.platforms:
            raise UserError(f"{t.tag} is not built for this platform", value=platform, allowed=t.platforms)
        return compose(self.recipes[t.backend], t, platform)

    def image(self, tag: str, registry: str | None = None) -> str:
        return format_image(tag, self.namespace, self.repository, self.registry if registry is None else registry)


def load_project(matrix_path: Path | str | None = None, pack_path: Path | str | None = None) -> Project:
    """Load and validate matrix.yaml against the recipes of pack/ (default: beside the matrix)."""
    path = Path(matrix_path) if matrix_path else default_matrix_path()
    pack = Path(pack_path) if pack_path else path.parent / "pack"
    key, cache_file = _cache_key(path, pack)
    if cache_file and (cached := _read_cache(cache_file, key)):
        return Project(path, pack, **cached)
    project = _validate(path, pack)
    if cache_file:
        _write_cache(cache_file, key, project)
    return project


def default_matrix_path() -> Path:
    """matrix.yaml of the project: $RUNNER_MATRIX, else the nearest one upward from the working
    directory, else the one beside the installed package's source tree."""
    from runner.model.files import project_folder

    if env := os.environ.get("RUNNER_MATRIX"):
        return Path(env)
    return project_folder() / "matrix.yaml"


def _validate(path: Path, pack: Path) -> Project:
    from runner.model.matrix import load_document, validate
    from runner.compose.recipes import load_recipes
    from runner.model.targets import expand

    recipes = load_recipes(pack)
    doc = load_document(path)
    matrix = validate(doc, {name: r.services for name, r in recipes.items()})
    return Project(path, pack, matrix.namespace, matrix.repository,
                   {n: list(b.variants) for n, b in matrix.backends.items()},
                   {n: sorted(r.services) for n, r in recipes.items()},
                   expand(matrix, doc.where), mirrors=dict(matrix.mirrors), _recipes=recipes)


def _cache_key(path: Path, pack: Path) -> tuple[str, Path | None]:
    if os.environ.get("RUNNER_NO_CACHE"):
        return "", None
    try:
        import stat

        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > 4 * 1024 * 1024:
            return "", None  # a pipe, device or huge file: validation reports it without hanging here
        h = hashlib.sha256(f"{_CACHE_FORMAT}\0{path.resolve()}\0".encode())
        h.update(path.read_bytes())
        for recipe in sorted(pack.glob("*/recipe.py")):
            h.update(f"\0{recipe.parent.name}\0".encode() + recipe.read_bytes())
    except (OSError, RuntimeError):  # RuntimeError: a symbolic-link loop
        return "", None  # let validation report the unreadable file
    from runner.model.files import JsonCache

    return h.hexdigest(), JsonCache("matrix").file(h.hexdigest())


def _read_cache(file: Path, key: str) -> dict | None:
    """What this very runner cached for this key (see runner.model.files.read_cache), when every field
    has its type; anything else is a miss, validated again and rewritten."""
    from runner.model.files import read_cache

    data = read_cache(file, key)
    try:
        return _cached_fields(data) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


_TARGET_FIELDS = {f.name for f in dataclasses.fields(Target) if f.init}


def _strings(value: object, kind: type[list] | type[tuple] = list) -> bool:
    return isinstance(value, kind) and all(isinstance(v, str) for v in value)


def _cached_fields(data: dict) -> dict | None:
    targets = []
    for t in data["targets"]:
        if set(t) != _TARGET_FIELDS or not _strings([v for k, v in t.items() if k not in ("where", "platforms", "archs")]) \
                or not _strings(t["platforms"]) or not _strings(t["archs"]):
            return None
        where = t.pop("where")
        if where is not None and not (isinstance(where[0], str) and all(isinstance(n, int) or n is None for n in where[1:])):
            return None
        targets.append(Target(**{**t, "platforms": tuple(t["platforms"]), "archs": tuple(t["archs"])},
                              where=Where(*where) if where else None))
    variants, services, mirrors = data["variants"], data["services"], data["mirrors"]
    if not (_strings([data["namespace"], data["repository"], *mirrors, *mirrors.values()])
            and all(_strings(v) for v in [*variants.values(), *services.values()])):
        return None
    return {"namespace": data["namespace"], "repository": data["repository"], "variants": variants,
            "services": services, "targets": targets, "mirrors": mirrors}


def _write_cache(file: Path, key: str, p: Project) -> None:
    from runner.model.files import write_cache

    targets = []
    for t in p.targets:
        d = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.init}
        d["where"] = [t.where.file, t.where.line, t.where.column] if t.where else None
        targets.append(d)
    write_cache(file, key, {"namespace": p.namespace, "repository": p.repository, "variants": p.variants,
                            "services": p.services, "targets": targets, "mirrors": p.mirrors})
