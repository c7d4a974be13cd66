"""Smoke `expect` patterns: compiled by RE2 when the spec loads (a pattern RE2 refuses is a clear error
before any build), matched in linear time however hostile the image's output, with the values filled
into them matched as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.compose.plan import make_plan
from runner.compose.project import load_project
from runner.model.errors import UserError
from runner.release.pipeline import build_all
from runner.verify.smoke import Check, checks_for, load_spec

FIXTURE = Path(__file__).parent / "fixtures" / "e2e"


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?<=x)y", "[z-a]", "(unclosed"])
def test_a_pattern_re2_refuses_names_the_file_and_line(tmp_path, pattern):
    spec = tmp_path / "smoke.yaml"
    spec.write_text(f"checks:\n  - name: ok\n    run: exit 0\n  - name: bad\n    run: exit 0\n    expect: '{pattern}'\n")
    with pytest.raises(UserError, match=rf"{re.escape(str(spec))}:6:\d+: checks.1.expect: .*not a pattern RE2 accepts"):
        load_spec(spec)


class NeverBuilds:
    name = "never"

    def __init__(self) -> None:
        self.builds = 0

    async def build(self, leaf):
        self.builds += 1
        raise AssertionError("no build should start")


async def test_a_bad_pattern_stops_the_run_before_any_build(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "project")
    spec = tmp_path / "project" / "pack" / "_smoke" / "echo.yaml"
    spec.write_text(spec.read_text().replace("expect: '^echo-serve ${service_version}$'",
                                             "expect: '^echo-serve (${service_version})\\1$'"))
    project = load_project(tmp_path / "project" / "matrix.yaml")
    engine = NeverBuilds()
    with pytest.raises(UserError, match=r"echo.yaml:4:\d+: checks.0.expect"):
        await build_all(make_plan(project.targets, project.recipes), engine, project.pack_path)
    assert engine.builds == 0


def test_a_backtracking_pattern_on_hostile_output_ends_at_once():
    """(a+)+$ against 'aaaa...b' takes Python's re exponential time; RE2 answers in linear time."""
    code = ("from runner.verify.smoke import Check\n"
            "r = Check('x', '', expect='(a+)+$').judge(0, 'a' * 200000 + 'b')\n"
            "print(r.passed, r.reason)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("False output does not match"), done.stderr[-2000:]


def test_filled_values_are_matched_as_written():
    project = load_project(FIXTURE / "matrix.yaml")
    leaf = make_plan(project.targets[:1], project.recipes).leaves[0]
    version = next(c for c in checks_for(project.pack_path, leaf.target, leaf.stage) if c.name == "version")
    served = leaf.target.service_version
    assert version.judge(0, f"echo-serve {served}\n").passed
    assert not version.judge(0, f"echo-serve {served.replace('.', 'x')}\n").passed  # a dot is a dot
    plus = Check("torch", "", expect="^" + re.escape("2.9.0+cu128"))
    assert plus.judge(0, "2.9.0+cu128\n").passed and not plus.judge(0, "2.9.00cu128\n").passed
