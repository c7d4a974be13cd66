"""The source mirror: real upstream releases (sdists from the package index) as git repositories with
their real tags, cloned by the recipes' own rendered clone lines over git's smart HTTP protocol
through the mirror map; refs the index cannot supply are reported with the reason, and every request
is recorded with its answer. Sdists stay in the tests' cache (~/.cache/runner-tests/sources)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from runner.compose.mirrors import Mirrors, mirrors
from runner.compose.plan import make_plan
from runner.compose.requirements import expand
from runner.compose.stages import Run
from runner.verify.source_mirror import SourceMirror
from runner.verify.upstream import UPSTREAMS, Upstreams, clone_refs, wanted_refs
from tests.conftest import TEST_CACHE

VLLM = "https://github.com/vllm-project/vllm.git"
SGLANG = "https://github.com/sgl-project/sglang.git"


@pytest.fixture(scope="module")
def mirror():
    start = time.monotonic()
    m = SourceMirror(TEST_CACHE / "sources")
    obtained = m.prepare({VLLM: {"v0.14.1": []}, SGLANG: {"v0.5.8": []},
                          "https://github.com/NVIDIA/gdrcopy.git": {"v2.5.1": []}})
    print(f"[source mirror] vLLM 0.14.1 and SGLang 0.5.8 mirrored in {time.monotonic() - start:.1f} s", file=sys.stderr)
    with m:
        yield m, {(o.url, o.ref): o for o in obtained}


def _cuda_vllm_clone_line(project) -> tuple[str, dict[str, str]]:
    """The clone line of CUDA vLLM 0.14.1's build stage, as rendered, and that stage's build arguments."""
    plan = make_plan([project.target("cuda12.8-vllm0.14.1")], project.recipes)
    for stage in plan.stages:
        args = {a.name: a.value for s in stage.chain() for a in s.args}
        for step in stage.steps:
            if isinstance(step, Run) and VLLM in step.script and args.get("VLLM_VERSION") == "0.14.1":
                return next(line for line in step.script.splitlines() if "git clone" in line), args
    raise AssertionError("no vLLM clone in the CUDA vLLM 0.14.1 plan")


def _run_clone(line: str, args: dict[str, str], cwd) -> subprocess.CompletedProcess:
    # the line's words as bash splits them, build arguments filled as BuildKit gives them to the step
    argv = [expand(w, args) for w in shlex.split(line.split("&&")[0])]
    argv[-1] = str(cwd / "vllm")  # the line clones into /tmp/vllm: here, into the test's folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**env, "GIT_TERMINAL_PROMPT": "0"},
                          timeout=300)


def test_the_cuda_recipes_clone_line_checks_out_the_real_vllm_release(mirror, project, tmp_path):
    m, obtained = mirror
    assert obtained[(VLLM, "v0.14.1")].status == "mirrored"
    assert obtained[(VLLM, "v0.14.1")].sdist == "vllm-0.14.1.tar.gz"
    line, args = _cuda_vllm_clone_line(project)
    mapped = mirrors(environ={"RUNNER_MIRRORS": m.mirrors_env()})
    rewritten = mapped.text(line)
    assert m.base in rewritten and VLLM not in rewritten
    done = _run_clone(rewritten, args, tmp_path)
    assert done.returncode == 0, done.stderr
    tree = tmp_path / "vllm"
    # the real release: its version file and the module the patches change
    assert (tree / "vllm" / "utils" / "network_utils.py").is_file()
    assert "0.14.1" in (tree / "PKG-INFO").read_text()
    described = subprocess.run(["git", "-C", str(tree), "describe", "--tags"], capture_output=True, text=True)
    assert described.stdout.strip() == "v0.14.1"
    # as a clone of the repository: the file vLLM's build generates is not tracked, so writing it (as the
    # build does) leaves the tree clean and setuptools-scm names the release, not a dirty next pre-release
    assert not (tree / "vllm" / "_version.py").exists()
    (tree / "vllm" / "_version.py").write_text("__version__ = version = '0.14.1'\n")
    status = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout == ""
    assert any(r.path.endswith("/git-upload-pack") and r.status == 200 for r in m.requests)


def test_a_missing_tag_fails_the_way_git_fails(mirror, tmp_path):
    m, _ = mirror
    url = Mirrors.of(m.mirror_map(repositories=[VLLM], downloads=[])).url(VLLM)
    done = subprocess.run(["git", "clone", "--depth", "1", "--single-branch", "--branch", "v9.9.9", url, "x"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 128
    assert "Remote branch v9.9.9 not found in upstream origin" in done.stderr


def test_sglang_is_its_python_folder_and_says_what_is_missing(mirror, tmp_path):
    m, obtained = mirror
    o = obtained[(SGLANG, "v0.5.8")]
    assert o.status == "mirrored" and any("sgl-model-gateway" in n for n in o.notes)
    tree = m.upstreams.tree(SGLANG, "v0.5.8", tmp_path / "sglang")
    assert (tree / "python" / "pyproject.toml").is_file() and (tree / "python" / "sglang").is_dir()
    assert not (tree / "sgl-model-gateway").exists()


def test_refs_the_index_cannot_supply_are_not_obtainable_with_the_reason(mirror, tmp_path):
    m, obtained = mirror
    assert "no index project is declared" in obtained[("https://github.com/NVIDIA/gdrcopy.git", "v2.5.1")].reason
    up = Upstreams(tmp_path / "empty")
    commit = up.obtain("https://github.com/vllm-project/vllm-omni.git", "2c294a7")
    assert commit.status == "not-obtainable" and "is a commit" in commit.reason
    branch = up.obtain("https://github.com/vllm-project/vllm.git", "main")
    assert branch.status == "not-obtainable" and "not a release tag" in branch.reason
    absent = up.obtain("https://github.com/vllm-project/vllm.git", "v0.0.0.999")
    assert absent.status == "not-obtainable" and "no sdist of vllm 0.0.0.999" in absent.reason


def test_downloads_are_served_when_present_and_404s_are_recorded_with_their_url(mirror):
    import httpx

    m, _ = mirror
    present = m.files / "example.org" / "release" / "tool-1.0.tar.gz"
    present.parent.mkdir(parents=True, exist_ok=True)
    present.write_bytes(b"tool 1.0")
    table = Mirrors.of(m.mirror_map(repositories=[], downloads=["https://example.org/release/tool-1.0.tar.gz"]))
    assert httpx.get(table.url("https://example.org/release/tool-1.0.tar.gz")).content == b"tool 1.0"
    missing = "https://example.org/release/tool-2.0.tar.gz"
    assert httpx.get(table.url(missing)).status_code == 404
    assert missing in m.not_fetchable()
    assert "https://example.org/release/tool-1.0.tar.gz" not in m.not_fetchable()
    # an encoded space (MindIE's "MindIE%20{version}" folder) is named as the script wrote it: one word
    spaced = "https://example.org/MindIE/MindIE%202.3.0/Ascend-mindie_2.3.0_linux-x86_64_abi0.run"
    assert httpx.get(table.url(spaced)).status_code == 404
    assert spaced in m.not_fetchable()
    # a repository the mirror does not hold is a 404 too, named by its clone URL
    gone = Mirrors.of(m.mirror_map(repositories=["https://github.com/NVIDIA/gdrcopy.git"], downloads=[]))
    done = subprocess.run(["git", "ls-remote", gone.url("https://github.com/NVIDIA/gdrcopy.git")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert done.returncode != 0
    assert "https://github.com/NVIDIA/gdrcopy.git" in m.not_fetchable()


def test_every_clone_of_the_seed_plan_has_its_concrete_ref(project):
    wanted = wanted_refs(make_plan(project.targets, project.recipes).stages)
    assert "v0.14.1" in wanted[VLLM] and not any("$" in ref for refs in wanted.values() for ref in refs)
    # every repository the recipes clone is declared here, or reported as having no index project
    assert set(UPSTREAMS) - set(wanted) == set()
    assert clone_refs("git clone --depth 1 --single-branch --branch \"v${X}\" https://h/r.git /tmp/r") == \
        [("https://h/r.git", "v${X}")]
    assert clone_refs("git clone https://h/r.git /tmp/r && git -C /tmp/r checkout 9b680f42") == \
        [("https://h/r.git", "9b680f42")]
    assert re.fullmatch(r"[0-9.a-z]+", UPSTREAMS[VLLM].version("v0.14.1"))


def test_the_rocm_build_reads_the_package_index_where_vllms_own_file_names_pytorchs(mirror, project, tmp_path):
    """vLLM's requirements/rocm-build.txt names PyTorch's ROCm index, which the mirror map cannot reach:
    the rehearsal's line before the install points the file at the package index. Run here, as bash runs
    it, on the real file of the real release; PyTorch's CPU index (not answered) is left as it is."""
    from runner.rehearse.substitutions import ANSWERED_IN, INDEX_MARK, indexes_in_sources

    m, _ = mirror
    line, args = _cuda_vllm_clone_line(project)
    assert _run_clone(mirrors(environ={"RUNNER_MIRRORS": m.mirrors_env()}).text(line), args, tmp_path).returncode == 0
    file = tmp_path / "vllm" / "requirements" / "rocm-build.txt"
    assert "--extra-index-url https://download.pytorch.org/whl/rocm" in file.read_text()
    plan = make_plan([project.target("rocm7.0-vllm0.14.1")], project.recipes)
    step = next(st for s in plan.stages for st in s.steps if isinstance(st, Run) and "rocm-build.txt" in st.script)
    script, subs = indexes_in_sources(step.script, "https://index.invalid/simple/")
    edit = next(ln for ln in script.splitlines() if INDEX_MARK in ln)
    assert script.index(INDEX_MARK) < script.index("uv pip install -r requirements/rocm-build.txt")
    with file.open("a") as f:
        f.write("--extra-index-url https://download.pytorch.org/whl/cpu\n")
    done = subprocess.run(["bash", "-ec", edit], cwd=tmp_path / "vllm", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"{ANSWERED_IN} requirements/rocm-build.txt\n", done
    text = file.read_text()
    assert "--extra-index-url https://index.invalid/simple/\n" in text and "whl/rocm" not in text
    assert "--extra-index-url https://download.pytorch.org/whl/cpu\n" in text
    assert not list(file.parent.glob("*.runner"))  # the copy it compared with is gone
    assert [(s.what, s.file) for s in subs] == [("PyTorch's wheel index named in requirements/rocm-build.txt (read by "
                                                 "the step's install)", "requirements/rocm-build.txt")]
    # a file that names no such index (CUDA's requirements/build.txt) is left as it was, and said so by silence:
    # the rehearsal then drops the substitution from the report
    build = file.parent / "build.txt"
    before = build.read_text()
    edit = edit.replace("requirements/rocm-build.txt", "requirements/build.txt")
    done = subprocess.run(["bash", "-ec", edit], cwd=tmp_path / "vllm", capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, build.read_text()) == (0, "", before)
    # a step with no install from a file is left as it is
    assert indexes_in_sources("uv pip install vllm==0.14.1", "https://index.invalid/simple/") == ("uv pip install vllm==0.14.1", [])
