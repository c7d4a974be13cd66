"""JSON Schema of matrix.yaml, with the backend and service names the recipes in pack/ know."""

from __future__ import annotations

from pathlib import Path

from runner.model.matrix import Matrix
from runner.compose.project import default_matrix_path
from runner.compose.recipes import load_recipes


def matrix_schema(pack: Path | None = None) -> dict:
    """The schema editors use to check matrix.yaml as people type (yaml-language-server and others)."""
    recipes = load_recipes(pack or default_matrix_path().parent / "pack")
    schema = Matrix.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "runner matrix.yaml"
    backends = schema["properties"]["backends"]
    backends["propertyNames"] = {"enum": sorted(recipes)}
    services = sorted({s for r in recipes.values() for s in r.services})
    schema["$defs"]["Release"]["properties"]["services"]["propertyNames"] = {"enum": services}
    # A service version may be written as a bare version string.
    sv = schema["$defs"]["Release"]["properties"]["services"]["additionalProperties"]
    sv["items"] = {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/ServiceVersion"}]}
    return schema
