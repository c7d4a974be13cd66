"""A newcomer's first commands: the cache per project and `runner cache`, the engine choice (the
embedded engine only when no daemon is named or answers), the default rehearsal target, and the
static-busybox check of the e2e base. The embedded engine itself runs in tests/e2e/test_rehearse.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.cli.parser import build_parser
from runner.engines import private_daemon
from runner.engines.docker_client import ENGINE_HINT
from runner.model.errors import InfrastructureError
from runner.model.files import cache_root
from runner.ui import cache as folders
from tests.conftest import ROOT
from tests.e2e import infra


def test_each_checkout_has_a_cache_of_its_own(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNNER_CACHE_DIR")
    monkeypatch.delenv("RUNNER_MATRIX", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    roots = []
    for name in ("one", "two"):
        checkout = tmp_path / name / "runner"
        (checkout / "pack").mkdir(parents=True)
        (checkout / "matrix.yaml").write_text("{}\n")
        (checkout / "docs").mkdir()
        monkeypatch.chdir(checkout / "docs")  # found upward from a subfolder too
        roots.append(cache_root())
    assert roots[0] != roots[1]
    assert all(r.parent == tmp_path / "xdg" / "runner" / "projects" and r.name.startswith("runner-") for r in roots)
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_cache_info_sizes_each_kind_and_clear_removes_only_runners_folders(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(root))
    monkeypatch.delenv("RUNNER_SOURCES_DIR")
    (root / "resolve").mkdir(parents=True)
    (root / "resolve" / "answer.json").write_bytes(b"x" * 10000)
    (root / "sources" / "files").mkdir(parents=True)
    (root / "sources" / "files" / "a.tar.gz").write_bytes(b"y" * 5000)
    (root / "users-own").mkdir()  # not runner's: never counted, never removed
    (root / "users-own" / "keep.txt").write_text("mine")
    (root / ".clearing-1").mkdir()  # what an interrupted clear left
    (root / ".clearing-1" / "old").write_text("half")

    assert main(["cache", "--info"]) == 0
    out = capsys.readouterr().out
    assert f"cache of this project: {root}" in out
    sizes = {k.name: k for k in folders.kinds(root)}
    assert sizes["resolve"].files == 1 and sizes["resolve"].bytes >= 10000 and sizes["sources"].files == 1
    assert sizes["smoke"].bytes == 0 and "users-own" not in out

    assert main(["cache", "--clear"]) == 0
    out = capsys.readouterr().out
    assert "resolve" in out and "sources" in out
    assert sorted(p.name for p in root.iterdir()) == ["users-own"]
    assert (root / "users-own" / "keep.txt").read_text() == "mine"


def test_clear_keeps_a_sources_folder_outside_the_cache(tmp_path, monkeypatch, capsys):
    root, sources = tmp_path / "cache", tmp_path / "elsewhere"
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(root))
    monkeypatch.setenv("RUNNER_SOURCES_DIR", str(sources))
    (root / "smoke").mkdir(parents=True)
    sources.mkdir()
    (sources / "a").write_text("a")
    removed, notes = folders.clear(root)
    assert [k.name for k in removed] == ["smoke"] and (sources / "a").exists()
    assert any(str(sources) in n for n in notes)


def test_info_and_clear_together_is_a_user_error(capsys):
    assert main(["cache", "--info", "--clear"]) == 2
    assert "--info and --clear go separately" in capsys.readouterr().err


def test_a_named_daemon_is_used_and_nothing_is_started(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere/d.sock")
    monkeypatch.setattr(private_daemon.PrivateDaemon, "start", lambda self: pytest.fail("started a daemon"))
    with private_daemon.engine_for_run() as host:
        assert host == "unix:///nowhere/d.sock"
    assert os.environ["DOCKER_HOST"] == "unix:///nowhere/d.sock"


def test_with_no_daemon_and_no_way_to_start_one_the_error_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(private_daemon, "DEFAULT_SOCKET", tmp_path / "docker.sock")
    monkeypatch.setattr(private_daemon, "dockerd", lambda: "")
    with pytest.raises(InfrastructureError) as e:
        with private_daemon.engine_for_run():
            pytest.fail("ran without an engine")
    assert "no container engine" in str(e.value) and "dockerd is not installed" in str(e.value)
    assert e.value.advice == ENGINE_HINT and "DOCKER_HOST" in e.value.advice
    assert "DOCKER_HOST" not in os.environ


def test_a_long_cache_path_puts_the_daemons_sockets_in_a_short_folder(tmp_path):
    daemon = private_daemon.PrivateDaemon(tmp_path / ("x" * 80) / "engine")
    assert daemon.data == tmp_path / ("x" * 80) / "engine" / "data"
    assert len(str(daemon.socket)) < 100 and len(str(daemon.state)) < 60
    short = private_daemon.PrivateDaemon(Path("/tmp/rk-1"))
    assert short.host == "unix:///tmp/rk-1/d.sock" and short.state == Path("/tmp/rk-1/x")


def test_rehearse_without_a_selection_needs_the_default_target(monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_MATRIX", str(ROOT / "tests" / "fixtures" / "rehearse" / "matrix.yaml"))
    assert main(["rehearse"]) == 2
    err = capsys.readouterr().err
    from runner.cli.rehearse import DEFAULT_TARGET

    assert f"no {DEFAULT_TARGET}" in err and "--all" in err


def test_every_filter_of_rehearse_is_a_selection_not_the_default_target(monkeypatch):
    """`runner rehearse --select X` (or any other filter) rehearses X, never the default target."""
    import argparse

    from runner.cli import rehearse
    from runner.cli.parser import selection_args

    p = argparse.ArgumentParser()
    selection_args(p)
    filters = {a.dest for a in p._actions if a.option_strings and a.dest not in ("help", "matrix", "include_deprecated")}
    assert filters == set(rehearse.FILTERS)
    monkeypatch.setenv("RUNNER_MATRIX", str(ROOT / "tests" / "fixtures" / "rehearse" / "matrix.yaml"))
    for option, value in (("--select", "vendor1.0-echo0.2*"), ("--skip", "*0.1.0 *0.3.0 *0.4.0")):
        a = build_parser().parse_args(["rehearse", option, value])
        _, targets = rehearse._selection(a)
        assert [t.tag for t in targets] == ["vendor1.0-echo0.2.0"], (option, [t.tag for t in targets])


def test_the_default_rehearsal_target_is_in_the_matrix(project):
    from runner.cli.rehearse import DEFAULT_PLATFORM, DEFAULT_TARGET

    (target,) = [t for t in project.targets if t.tag == DEFAULT_TARGET]
    assert DEFAULT_PLATFORM in target.platforms


def test_a_dynamic_busybox_is_told_apart_from_a_static_one(tmp_path):
    # this interpreter is a dynamically linked program: it names its loader
    assert "ld-" in infra.elf_interpreter(Path(sys.executable).resolve())
    static = tmp_path / "static"
    # a minimal 64-bit ELF header with no program headers: nothing to load, so static
    static.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    assert infra.elf_interpreter(static) == ""
    assert "not a 64-bit ELF" in infra.elf_interpreter(Path(__file__))
