"""The runner CLI as a user runs it: a process, its output and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True)


def test_matrix_json_has_the_documented_keys():
    out = run("matrix", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    every = json.loads(run("matrix", "--format", "json", "--include-deprecated").stdout)
    assert len(every) == 246 and any(r["status"] == "deprecated" for r in every)
    # deprecated targets are left out by default, as `dagger call select matrix` leaves them out
    assert rows == [r for r in every if r["status"] != "deprecated"]
    row = next(r for r in rows if r["tag"] == "cann8.5-a3-vllm0.14.1")
    assert {k: row[k] for k in ("backend", "backend_version", "original_backend_version", "backend_variant", "service",
                                "service_version", "platforms", "status")} == {
        "backend": "cann", "backend_version": "8.5", "original_backend_version": "8.5.0", "backend_variant": "a3",
        "service": "vllm", "service_version": "0.14.1", "platforms": ["linux/amd64", "linux/arm64"], "status": "active"}
    assert next(r for r in rows if r["backend"] == "cuda")["backend_variant"] == ""


def test_matrix_filters_and_formats():
    out = run("matrix", "--backend", "cuda", "--service", "voxbox", "--format", "tags")
    assert out.stdout.split() == ["cuda12.8-voxbox0.0.21"]  # 12.6's is deprecated
    out = run("matrix", "--backend", "cuda", "--service", "voxbox", "--format", "tags", "--include-deprecated")
    assert out.stdout.split() == ["cuda12.8-voxbox0.0.21", "cuda12.8-voxbox0.0.20", "cuda12.6-voxbox0.0.21",
                                  "cuda12.6-voxbox0.0.20", "cuda12.4-voxbox0.0.20"]
    table = run("matrix", "--backend", "rocm", "--service-version", "0.13", "--include-deprecated")
    assert table.returncode == 0 and "rocm7.0-vllm0.13.0" in table.stdout and "rocm6.4-vllm0.13.0" in table.stdout


def test_parse_prints_one_json_object_per_line():
    out = run("parse", "gpustack/runner:cann8.5-a3-vllm0.14.1", "cuda12.8-vllm0.14.1-linux-arm64")
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["backend_variant"] for x in lines] == ["a3", ""] and lines[1]["platform"] == "linux/arm64"


@pytest.mark.parametrize("args,message", [
    (("matrix", "--backend", "cudaa"), "unknown backend: 'cudaa'"),
    (("matrix", "--backend", "corex", "--service", "sglang"), "the filters select no target"),
    (("parse", "gpustack/runner:cuda12.8-910b-vllm0.9.2"), "backend 'cuda' has no variant '910b'"),
    (("dockerfile", "cuda12.8-vllm0.14.1", "--platform", "linux/s390x"), "not built for this platform"),
    (("catalog", "--file", "/nonexistent.json"), "catalog file not found"),
])
def test_user_errors_exit_2_without_traceback(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_matrix_error_from_the_cli_names_file_and_line(tmp_path):
    (tmp_path / "matrix.yaml").write_text((ROOT / "matrix.yaml").read_text().replace("vllm: [0.8.3]", "vllm: [0.8.3x]"))
    out = run("matrix", "--matrix", str(tmp_path / "matrix.yaml"), "--format", "json")
    assert out.returncode == 2 and out.stdout == ""
    assert f"{tmp_path / 'matrix.yaml'}:193:18: malformed version '0.8.3x'" in out.stderr


def test_catalog_and_schema():
    out = run("catalog", "--backend", "musa", "--format", "json")
    assert [r["docker_image"] for r in json.loads(out.stdout)] == ["gpustack/runner:musa4.3-sglang0.5.7",
                                                                         "gpustack/runner:musa4.3-sglang0.5.2",
                                                                         "gpustack/runner:musa4.1-vllm0.9.2"]
    schema = json.loads(run("schema").stdout)
    assert schema["title"] == "runner matrix.yaml" and "cann" in schema["properties"]["backends"]["propertyNames"]["enum"]


def test_the_core_commands_do_not_import_the_dagger_sdk():
    code = ("import sys; from runner.cli import main; sys.argv=['runner']; "
            "main(['matrix','--format','json']); main(['plan','--backend','corex','--format','json']); "
            "assert not any(m == 'dagger' or m.startswith('dagger.') for m in sys.modules), 'dagger imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
