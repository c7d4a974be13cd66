"""The project a Dagger function works on: its source Directory (matrix.yaml and pack/) exported into
the function's own container and loaded like any checkout, once per source per process; and the
catalog File a release step returns."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import dagger
from dagger import dag

from runner.compose.project import Project, load_project
from runner.model.catalog import PACKAGED, CatalogFile

_LOADED: dict[str, Project] = {}


async def export_source(source: dagger.Directory) -> Path:
    """Write the source into this function's container (inside a module, export writes there)."""
    folder = Path(tempfile.mkdtemp(prefix="runner-source-"))
    await source.export(str(folder))
    return folder


async def load(source: dagger.Directory) -> Project:
    """The validated project of a source Directory."""
    key = await source.digest()
    if key not in _LOADED:
        folder = await export_source(source)
        _LOADED[key] = load_project(folder / "matrix.yaml", folder / "pack")
    return _LOADED[key]


async def updated_catalog(catalog: dagger.File | None, change: Callable[[CatalogFile], Awaitable]) -> dagger.File:
    """Run `change(CatalogFile)` on a local copy of the catalog (default: the packaged one) and return
    the result as a File."""
    with tempfile.TemporaryDirectory(prefix="runner-catalog-") as folder:
        path = Path(folder) / "catalog.json"
        path.write_text(await catalog.contents() if catalog else PACKAGED.read_text())
        await change(CatalogFile(path))
        return dag.directory().with_new_file("catalog.json", path.read_text()).file("catalog.json")
