"""The project a Dagger function works on: its source Directory (matrix.yaml and pack/) exported into
the function's own container and loaded like any checkout, once per source per process."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagger

from runner.compose.project import Project, load_project

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
