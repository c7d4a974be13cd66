"""A project: matrix.yaml plus pack/, validated together, with its targets and image-name parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from runner.matrix import PLATFORMS, Matrix, default_matrix_path, load_document, validate
from runner.naming import ImageParser, format_image
from runner.recipes import Recipe, load_recipes
from runner.targets import Selection, Target, expand


@dataclass
class Project:
    """Everything derived from one matrix file and the pack/ folder beside it."""

    matrix_path: Path
    pack_path: Path
    matrix: Matrix
    recipes: dict[str, Recipe]
    targets: list[Target]
    registry: str = ""
    _parser: ImageParser | None = field(default=None, repr=False)

    @cached_property
    def parser(self) -> ImageParser:
        """Reads image references with this project's backends, variants and services."""
        variants = {name: b.variants for name, b in self.matrix.backends.items()}
        services = {s for r in self.recipes.values() for s in r.services} | {t.service for t in self.targets}
        return ImageParser(variants, services, PLATFORMS)

    def select(self, selection: Selection) -> list[Target]:
        """The targets a selection keeps; refuses names that match nothing in the matrix."""
        selection.check_names(self.targets)
        return selection.apply(self.targets)

    def image(self, tag: str, registry: str | None = None) -> str:
        return format_image(tag, self.matrix.namespace, self.matrix.repository,
                            self.registry if registry is None else registry)


def load_project(matrix_path: Path | str | None = None, pack_path: Path | str | None = None) -> Project:
    """Load and validate matrix.yaml against the recipes of pack/ (default: beside the matrix)."""
    path = Path(matrix_path) if matrix_path else default_matrix_path()
    pack = Path(pack_path) if pack_path else path.parent / "pack"
    recipes = load_recipes(pack)
    doc = load_document(path)
    matrix = validate(doc, {name: r.services for name, r in recipes.items()})
    targets = expand(matrix, doc.where)
    return Project(path, pack, matrix, recipes, targets)
