"""Bad input, for every file and argument the CLI reads: a clear error and exit code 2, never a
traceback, a hang or a runaway memory use. Hostile files run in a child with a memory cap and a
timeout; mutated matrices come from hypothesis."""

from __future__ import annotations

import contextlib
import io
import os
import resource
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli import main
from tests.conftest import ROOT

MEMORY = 1 << 30  # 1 GiB: a matrix needs a few tens of MB


def run_capped(args: list[str], cwd, timeout: float = 30) -> subprocess.CompletedProcess:
    """`runner ARGS` in a child limited to MEMORY bytes and `timeout` seconds."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env={**os.environ, "RUNNER_NO_CACHE": "1"})


def _bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


HOSTILE_FILES = {
    "alias bomb": _bomb(),
    "recursive alias": "a: &a [*a]\n",
    "deep flow nesting": "a: " + "[" * 200_000 + "]" * 200_000 + "\n",
    "deep block nesting": "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v\n",
    "control character": "namespace: gpu\x07stack\n",
    "NUL byte": "namespace: gpustack\x00\n",
    "not UTF-8": b"namespace: \xff\xfe\n",
    "a list at the top": "- 1\n- 2\n",
    "tab indentation": "backends:\n\tcuda: {}\n",
    "merge key": "backends:\n  <<: {cuda: {}}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_a_hostile_matrix_is_a_clear_error(workdir, name):
    text = HOSTILE_FILES[name]
    path = workdir / "matrix.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    out = run_capped(["matrix", "--matrix", str(path)], workdir)
    assert out.returncode == 2, (name, out.returncode, out.stderr[-800:])
    assert "Traceback" not in out.stderr and out.stderr.startswith("runner: error: "), out.stderr[-800:]


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "directory", "missing"])
def test_special_files_are_refused_without_hanging(workdir, target):
    path = {"fifo": workdir / "m.yaml", "/dev/zero": "/dev/zero", "directory": workdir, "missing": workdir / "nope.yaml"}[target]
    if target == "fifo":
        os.mkfifo(path)
    for args in (["matrix", "--matrix", str(path)], ["catalog", "--file", str(path)]):
        out = run_capped(args, workdir, timeout=20)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr[-500:])


HOSTILE_ARGS = [
    ["parse", "gpustack/runner:cuda\u0661\u0662.8-vllm0.14.1"],  # Unicode digits
    ["parse", "gpustack/runner:cuda12.8-vllm0.14.1@sha256:zz"],
    ["parse", "gpustack/runner:cuda12.8-vllm01.14.1"],
    ["parse", " gpustack/runner:cuda12.8-vllm0.14.1"],
    ["parse", "GPUSTACK/runner:cuda12.8-vllm0.14.1"],
    ["parse", "gpustack/runner:" + "cuda12.8-vllm0.14.1" * 20],
    ["parse", ""],
    ["run-command", "cuda12.8-vllm0.14.1", "--devices", "a"],
    ["run-command", "cuda12.8-vllm0.14.1", "--devices", "0,,1"],
    ["dockerfile", "cuda12.8-vllm0.14.1", "--platform", "linux/s390x"],
    ["matrix", "--backend", "nope"],
    ["matrix", "--platform", "linux/s390x"],
    ["catalog", "--backend", "nope"],
    ["catalog", "--service-version", "9.9"],
    ["plan", "--service", "tgi"],
    ["resolve", "--backend", "nope"],
    ["profile", "--backend", "nope"],
    ["smoke", "not-a-runner-image:latest"],
    ["resolve", "--jobs", "0"],
    ["build", "--concurrency", "-1"],
]


@pytest.mark.parametrize("args", HOSTILE_ARGS, ids=lambda a: " ".join(a)[:60])
def test_a_hostile_argument_is_a_clear_error(args):
    out = run_capped(args, ROOT, timeout=60)
    assert out.returncode == 2, (out.returncode, out.stderr[-800:])
    assert "Traceback" not in out.stderr and "error: " in out.stderr, out.stderr[-800:]


def test_catalog_write_refuses_links_and_devices(tmp_path):
    link = tmp_path / "catalog.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    for target in (link, "/dev/null"):
        out = run_capped(["catalog", "--write", str(target)], ROOT)
        assert out.returncode == 2 and "regular file" in out.stderr, out.stderr[-500:]
    assert not (tmp_path / "elsewhere.json").exists()


def test_a_corrupted_cache_is_ignored_and_rebuilt(tmp_path):
    env = {**os.environ, "RUNNER_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-m", "runner", "matrix", "--format", "tags"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    (cached,) = (tmp_path / "matrix").glob("*.json")
    for garbage in ("{not json", '{"key": 1}', "[]", '{"key": "x", "targets": 7}', ""):
        cached.write_text(garbage)
        again = subprocess.run([sys.executable, "-m", "runner", "matrix", "--format", "tags"], cwd=ROOT, env=env,
                               capture_output=True, text=True)
        assert again.returncode == 0 and again.stdout == first.stdout, (garbage, again.stderr[-500:])


_SNIPPETS = ["version: 01.2", "version: 1.02", "version: ' 8.5.0'", 'base_image: "x:{version"', "base_image: x:{arch}",
             "namespace: |\n  gpustack", "- {version: 0.14.1, status: gone}", "platforms: [linux/s390x]", "python: 3",
             "&x a", "*x", "? [a]\n: b", "{", "]", "- - -", "variant: A B", "archs: 7", "services: {vllm: 0.1}",
             "releases: []", "backends: ~", "\t", "'", '"', "!!python/object:os.system", "0x10: y"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_matrices_fail_cleanly(workdir, data):
    """Random edits of the real matrix.yaml: each run ends with exit 0 or a UserError (exit 2), and
    never a traceback."""
    lines = (ROOT / "matrix.yaml").read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        edit = data.draw(st.sampled_from(["snippet", "delete", "duplicate", "text", "indent"]))
        if edit == "snippet":
            indent = len(lines[i]) - len(lines[i].lstrip())
            lines[i] = " " * indent + data.draw(st.sampled_from(_SNIPPETS))
        elif edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "text":
            pos = data.draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + data.draw(st.text(max_size=12)) + lines[i][pos:]
        else:
            lines[i] = " " * data.draw(st.integers(0, 12)) + lines[i].lstrip()
    (workdir / "matrix.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    stderr = io.StringIO()
    os.environ["RUNNER_NO_CACHE"] = "1"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            code = main(["matrix", "--matrix", str(workdir / "matrix.yaml"), "--format", "json"])
    finally:
        del os.environ["RUNNER_NO_CACHE"]
    assert code in (0, 2), stderr.getvalue()
    assert code == 0 or stderr.getvalue().startswith("runner: error: ")
