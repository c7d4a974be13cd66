"""The `sglang` command GPUStack 2.3.0 runs (`sglang serve ARGS`), provided where the SGLang release has
none (before 0.5.5): the rendered step run under bash, and the command it writes run with a launcher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.compose.commands import needs_sglang_command
from runner.compose.project import load_project
from runner.compose.stages import Run
from tests.conftest import ROOT

TITLE = "the sglang command GPUStack runs, where this SGLang release has none"


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT / "matrix.yaml")


def _step(project, tag: str) -> Run | None:
    leaf = project.leaf_stage(tag, project.target(tag).platforms[0])
    return next((s for s in leaf.steps if isinstance(s, Run) and s.title == TITLE), None)


def test_only_rows_whose_sglang_has_no_command_get_one(project):
    rows = [t for t in project.targets if t.service == "sglang"]
    given = {t.tag for t in rows if needs_sglang_command(t)}
    assert "musa4.3-sglang0.5.2" in given and "cuda13.0-sglang0.5.22" not in given
    for tag in ("musa4.3-sglang0.5.2", "cuda13.0-sglang0.5.22"):
        assert (_step(project, tag) is not None) == (tag in given), tag
    assert not any(needs_sglang_command(t) for t in project.targets if t.service != "sglang")


def test_the_step_writes_a_command_that_runs_the_launcher_with_the_arguments(project, tmp_path):
    bin_dir, lib = tmp_path / "bin", tmp_path / "lib" / "sglang"
    bin_dir.mkdir()
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    # a launcher that shows what it was given, where SGLang's own parses the server arguments
    (lib / "launch_server.py").write_text("import sys\nprint('launch_server', sys.argv[1:])\n")
    python3 = bin_dir / "python3"
    python3.symlink_to(sys.executable)
    script = _step(project, "musa4.3-sglang0.5.2").script.replace("/usr/local/bin/sglang", str(bin_dir / "sglang"))
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "lib")}
    subprocess.run(["bash", "-eo", "pipefail", "-c", script], check=True, env=env)
    done = subprocess.run(["sglang", "serve", "--model-path", "/models/m", "--port", "40000"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "launch_server ['--model-path', '/models/m', '--port', '40000']"
    other = subprocess.run(["sglang", "version"], env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "use: sglang serve ARGS" in other.stderr
    # an image with a sglang of its own keeps it
    (bin_dir / "sglang").write_text("#!/bin/sh\necho vendor\n")
    subprocess.run(["bash", "-eo", "pipefail", "-c", script], check=True, env=env)
    assert (bin_dir / "sglang").read_text() == "#!/bin/sh\necho vendor\n"
