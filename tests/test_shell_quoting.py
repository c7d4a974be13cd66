"""Values reach rendered scripts as single words that still expand the build arguments they should:
the quoting (runner.compose.shell.word) is run under bash, the seed recipes' scripts are rendered with
hostile values and run with a canary, and matrix.yaml refuses the values at load."""

from __future__ import annotations

import dataclasses
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.compose.plan import make_plan
from runner.compose.project import load_project
from runner.compose.shell import EXPANSION, word
from runner.compose.stages import Run
from tests.conftest import ROOT, SEED_MATRIX

BASH = shutil.which("bash") or "/bin/bash"


def _bash(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, "-c", script], capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env},
                          timeout=30)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_a_word_reaches_the_command_as_written(tmp_path_factory, text):
    canary = tmp_path_factory.mktemp("canary") / "ran"
    hostile = text + f'$(echo x > {canary})`echo y > {canary}`";echo z>{canary};"'
    if EXPANSION.search(hostile):
        return  # the meant expansions are tested below
    done = subprocess.run([BASH, "-c", f"printf '%s\\0' {word(hostile)}"], capture_output=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})
    assert done.stdout.split(b"\0")[:-1] == [hostile.encode()]
    assert not canary.exists()


def test_build_arguments_and_the_arch_still_expand():
    done = _bash(f"printf '%s\\0' {word('v${VLLM_VERSION}/$(uname -m)/${abi}')}", VLLM_VERSION="0.14.1", abi="TRUE")
    assert done.stdout == f"v0.14.1/{os.uname().machine}/TRUE\0"


def _repository(folder: Path, name: str, text: str, tag: str = "") -> str:
    """A local git repository of one file and one commit (tagged when asked); the commit's hash."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(folder)]
    folder.mkdir()
    subprocess.run([*git, "init", "-q"], check=True)
    (folder / name).write_text(text)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", tag or "c"], check=True)
    if tag:
        subprocess.run([*git, "tag", tag], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_the_rendered_clone_checks_out_the_tag(tmp_path):
    """The CUDA vLLM build's own clone line, against a local repository holding the tag v0.14.1."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    upstream = tmp_path / "vllm"
    _repository(upstream, "VERSION", "0.14.1\n", tag="v0.14.1")
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage("cuda12.8-vllm0.14.1", "linux/amd64")
    line = next(line.strip() for s in leaf.chain() for d in [s, *s.dependencies()] for step in d.steps
                if isinstance(step, Run) for line in step.script.splitlines() if "vllm-project/vllm.git" in line)
    assert "'" not in line, line  # nothing single-quoted: the ref holds a build argument
    line = line.replace("https://github.com/vllm-project/vllm.git", f"file://{upstream}").replace("/tmp/vllm", str(tmp_path / "out"))
    done = _bash(line, VLLM_VERSION="0.14.1", HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "VERSION").read_text() == "0.14.1\n"


def test_a_commit_clone_that_fails_stops_the_step(tmp_path):
    """The LMCache-Ascend build's own lines (a commit's clone, then `cd` and the build, then a clean-up),
    run as the Dockerfile's SHELL runs them with the clone failing: the step fails there. Before, bash's
    -e skipped the failed && list and the clean-up ended the step with success and no wheel; with the
    clone served, the same lines reach the build."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    from runner.compose.builds import lmcache_ascend_source

    script = (lmcache_ascend_source("dbd6545").replace("python3 -m build", "echo built >")
              .replace("/tmp/lmcache-ascend", f"{tmp_path}/clone"))
    missing = script.replace("https://github.com/LMCache/LMCache-Ascend.git", f"file://{tmp_path}/absent")
    done = subprocess.run([BASH, "-eo", "pipefail", "-c", missing], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode != 0 and "absent" in done.stderr, done.stdout + done.stderr
    assert "built" not in done.stdout
    upstream = tmp_path / "lmcache-ascend"
    commit = _repository(upstream, "setup.py", "")
    served = (lmcache_ascend_source(commit[:7]).replace("python3 -m build", f"echo built > {tmp_path}/built; true")
              .replace("https://github.com/LMCache/LMCache-Ascend.git", f"file://{upstream}")
              .replace("/tmp/lmcache-ascend", f"{tmp_path}/clone"))
    done = subprocess.run([BASH, "-eo", "pipefail", "-c", served], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "built").exists(), done.stderr


def test_the_flash_attn_wheel_is_saved_under_its_expanded_name(tmp_path):
    """The CUDA flash-attn stage's own script: its prebuilt wheel, served here, lands under the name
    uv accepts (the ABI and the machine filled in), and the step ends there."""
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage("cuda12.8-vllm0.14.1", "linux/amd64")
    stage = next(s for s in _all_stages(leaf) if s.name == "flash-attn-build")
    (script,) = [step.script for step in stage.steps if isinstance(step, Run)]
    machine = os.uname().machine
    name = f"flash_attn-2.8.3+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_{machine}.whl"
    served = tmp_path / "served" / "v2.8.3"
    served.mkdir(parents=True)
    (served / name).write_bytes(b"wheel")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(tmp_path / "served"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = (script.replace("https://github.com/Dao-AILab/flash-attention/releases/download/",
                                 f"http://127.0.0.1:{server.server_port}/")
                  .replace("/workspace/", f"{tmp_path}/workspace/"))
        done = subprocess.run([BASH, "-eo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60,
                              env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "workspace" / "flash-attn").iterdir()] == [name]


def _handler(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):  # noqa: D401 - keep the test output clean
            pass

    return Quiet


def _all_stages(leaf):
    seen, out = set(), []

    def visit(s):
        if s.key in seen:
            return
        seen.add(s.key)
        for d in s.dependencies():
            visit(d)
        out.append(s)

    visit(leaf)
    return out


def test_hostile_archs_run_nothing_in_any_rendered_script(tmp_path):
    """Every script of the seed matrix's CUDA, ROCm and CANN targets, rendered with archs that try to
    break out of their quotes, run by bash (no command on PATH: only builtins run) as an unprivileged
    user: the canary file is never written."""
    folder = Path(tempfile.mkdtemp(prefix="runner-canary-", dir="/tmp"))  # the unprivileged user must reach it
    folder.chmod(0o777)
    canary = folder / "canary"
    hostile = (f'gfx950";echo pwned > {canary};"', f"x';echo pwned > {canary};'", f"$(echo pwned > {canary})",
               f"`echo pwned > {canary}`")
    project = load_project(ROOT / "matrix.yaml")
    targets = [dataclasses.replace(t, archs=(*t.archs[:1], *hostile)) for t in project.targets
               if t.backend in ("cuda", "rocm", "cann")]
    scripts = {step.script for s in make_plan(targets, project.recipes).stages for step in s.steps if isinstance(step, Run)}
    assert any(h in s for s in scripts for h in hostile[:1]) or any("echo pwned" in s for s in scripts)
    user = [shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.getuid() == 0 and shutil.which("setpriv") else []
    before = set(Path("/tmp").iterdir())
    try:
        for script in scripts:
            subprocess.run([*user, BASH, "-c", script], capture_output=True, timeout=60, cwd=folder,
                           env={"PATH": "/nonexistent", "HOME": str(folder)})
            assert not canary.exists(), script
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        # the scripts' own redirections (`> /tmp/runner-constraints.txt`) are builtins too: what they made goes
        for made in set(Path("/tmp").iterdir()) - before:
            if made.is_file() and made.name.startswith("runner-"):
                made.unlink(missing_ok=True)
    # and the ARG values the Dockerfile declares for them are quoted for the Dockerfile
    from runner.compose.dockerfile import render

    leaf = make_plan(targets[:1], project.recipes).leaves[0].stage
    assert f'echo pwned > {canary}' not in "".join(line for line in render(leaf).text.splitlines()
                                                    if line.startswith("ARG ") and '"' not in line)


@pytest.mark.parametrize("edit, message", [
    (("archs: [gfx908, gfx90a, gfx942, gfx950,", 'archs: [gfx908, "gfx950\\";touch /tmp/PWNED;\\"", gfx950,'), "archs"),
    (("  cuda:\n    title: NVIDIA CUDA\n    python: \"3.12\"\n    platforms: [linux/amd64, linux/arm64]\n"
      "    base_image: nvidia/cuda:{version}-cudnn-devel-ubuntu22.04\n    releases:\n      - version: 12.9.1\n",
      "  cuda:\n    title: NVIDIA CUDA\n    python: \"3.12\"\n    platforms: [linux/amd64, linux/arm64]\n"
      "    base_image: nvidia/cuda:{version}-cudnn-devel-ubuntu22.04\n    releases:\n      - version: 12.9.1\n"
      "        python: \"3.12$(touch /tmp/PWNED)\"\n"), "python"),
    (("repository: runner\n", "repository: runner\nmirrors:\n  https://download.pytorch.org/whl/cu128: "
      "\"https://mirror.example/whl;{touch,/tmp/PWNED};#\"\n"), "mirror"),
])
def test_matrix_values_that_would_reach_a_shell_are_refused_at_load(tmp_path, edit, message):
    text = SEED_MATRIX.read_text()  # a known matrix: the January table
    assert edit[0] in text
    (tmp_path / "matrix.yaml").write_text(text.replace(edit[0], edit[1], 1))
    (tmp_path / "pack").symlink_to(ROOT / "pack")
    done = subprocess.run([sys.executable, "-m", "runner", "matrix"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "RUNNER_NO_CACHE": "1", "RUNNER_MATRIX": str(tmp_path / "matrix.yaml")})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr and "matrix.yaml:" in done.stderr, done.stderr


def test_a_patch_name_a_shell_would_read_is_refused(tmp_path):
    shutil.copytree(ROOT / "pack", tmp_path / "pack", symlinks=True)
    shutil.copy(ROOT / "matrix.yaml", tmp_path / "matrix.yaml")
    folder = tmp_path / "pack" / "_patches" / "vllm" / "0.11.2..0.14.1"
    shutil.copy(next(folder.glob("*.patch")), folder / "002-$(touch PWNED).patch")
    done = subprocess.run([sys.executable, "-m", "runner", "plan", "--backend", "cuda"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "RUNNER_NO_CACHE": "1", "RUNNER_MATRIX": str(tmp_path / "matrix.yaml")})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "malformed name" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "PWNED").exists()


def test_shellcheck_reports_an_expression_in_single_quotes_unless_a_reason_is_given():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (Debian's shellcheck); .ci/run installs it")
    from runner.compose.checks import check_shell
    from runner.compose.stages import StageBuilder, base_stage

    def stage(script: str):
        return StageBuilder("runtime", "runtime", base_stage("debian:12", "linux/amd64")).run(script).build()

    bad, _ = check_shell([stage("git clone --branch 'v${VLLM_VERSION}' https://example/x.git /tmp/x")])
    assert [f.check for f in bad] == ["shellcheck"] and "SC2016" in bad[0].message
    unexplained, _ = check_shell([stage("# shellcheck disable=SC2016\necho '${HOME}'")])
    assert any("gives no reason" in f.message for f in unexplained)
    explained, _ = check_shell([stage("# shellcheck disable=SC2016  # written for the image's own shell\necho '${HOME}'")])
    assert explained == []
