"""Shared fixtures: the project's own matrix, loaded once, a copy of it to break in tests, and a real
registry with a password (Debian's docker-registry; no root needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(os.environ.get("RUNNER_TEST_CACHE") or Path.home() / ".cache" / "runner-tests")  # kept between runs


_NOT_QUICK = {"e2e", "realservice", "realservice_extra", "slow"}


def pytest_collection_modifyitems(items) -> None:
    """`pytest -m quick`: every test that needs no daemon, no real service and no minutes of work."""
    for item in items:
        if not _NOT_QUICK & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.quick)


_FIGURES: list[str] = []


def pytest_runtest_logreport(report) -> None:
    """Keep the figures a passing test prints (lines that start with "[", e.g. "[rehearse] ...")."""
    if report.when == "call" and report.passed:
        _FIGURES.extend(line for name, text in report.sections if name.startswith("Captured")
                        for line in text.splitlines() if line.startswith("["))


def pytest_terminal_summary(terminalreporter) -> None:
    """Print those figures at the end of the run, so CI's log carries them (-q hides passing output)."""
    if _FIGURES:
        terminalreporter.section("figures the tests measured")
        for line in _FIGURES:
            terminalreporter.write_line(line)

@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path_factory, monkeypatch):
    # Tests must see validation happen, not a cache from an earlier run.
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # the releases' sdists and the repositories made of them never change: one folder for every run
    monkeypatch.setenv("RUNNER_SOURCES_DIR", str(TEST_CACHE / "sources"))


SEED_MATRIX = ROOT / "tests" / "fixtures" / "matrix-seed.yaml"


@pytest.fixture(scope="session")
def project():
    from runner.compose.project import _validate

    return _validate(ROOT / "matrix.yaml", ROOT / "pack")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the seed matrix (tests/fixtures/matrix-seed.yaml, the January table whose lines the
    editing tests name) and of pack/, that a test may edit."""
    shutil.copy(SEED_MATRIX, tmp_path / "matrix.yaml")
    shutil.copytree(ROOT / "pack", tmp_path / "pack", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.fixture(scope="module")
def registry():
    from tests.e2e import infra

    if not infra.have("docker-registry", "htpasswd"):
        pytest.fail("the registry tests need Debian's docker-registry and apache2-utils (.ci/run installs them)")
    e = infra.start_registry()
    try:
        yield e
    finally:
        infra.stop(e)
