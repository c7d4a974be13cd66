"""Shared fixtures: the project's own matrix, loaded once, and a copy of it to break in tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(os.environ.get("RUNNER_TEST_CACHE") or Path.home() / ".cache" / "runner-tests")  # kept between runs


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path_factory, monkeypatch):
    # Tests must see validation happen, not a cache from an earlier run.
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # the releases' sdists and the repositories made of them never change: one folder for every run
    monkeypatch.setenv("RUNNER_SOURCES_DIR", str(TEST_CACHE / "sources"))


@pytest.fixture(scope="session")
def project():
    from runner.compose.project import _validate

    return _validate(ROOT / "matrix.yaml", ROOT / "pack")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of matrix.yaml and pack/ that a test may edit."""
    shutil.copy(ROOT / "matrix.yaml", tmp_path / "matrix.yaml")
    shutil.copytree(ROOT / "pack", tmp_path / "pack", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path
