"""`runner outdated`: proposals from the index's releases (given as data: what the index answers is
input here), the matrix edit that keeps comments and layout and validates, and one small real run
against the package index (bench/outdated.py runs the whole matrix with its resolve)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from packaging.version import Version

from runner.compose.matrix_edit import apply, entry_text
from runner.compose.outdated import newer_pins, newer_series, propose
from runner.compose.project import load_project
from runner.model.catalog import RunnerRecord
from runner.model.marked_yaml import load_marked
from tests.conftest import ROOT, SEED_MATRIX

MATRIX = SEED_MATRIX.read_text()  # a known matrix: the January table


def _index(**releases: str) -> dict[str, list[Version]]:
    return {name.replace("_", "-"): sorted(map(Version, text.split()), reverse=True) for name, text in releases.items()}


def test_the_newest_patch_of_each_newer_series_and_no_prerelease():
    found = newer_series(map(Version, "0.16.0rc1 0.15.1 0.15.0 0.14.2 0.14.1 0.13.0".split()), Version("0.14.1"))
    assert found == [Version("0.15.1"), Version("0.14.2")]
    assert newer_series(map(Version, "0.5.10 0.5.9.post1 0.5.9 0.5.8".split()), Version("0.5.8"), 3) == \
        [Version("0.5.10"), Version("0.5.9.post1")]


def test_proposals_go_to_the_rows_of_the_newest_version_and_wait_for_vllm_ascend():
    doc = load_marked(MATRIX, "matrix.yaml")
    index = _index(vllm="0.16.0 0.15.1 0.15.0 0.14.1", vllm_ascend="0.15.0rc1 0.14.0rc1", sglang="0.5.9 0.5.8",
                   vox_box="0.0.21")
    got = {(p.backend, p.release, p.service): p.versions for p in propose(doc.data, index).proposals}
    assert got[("cuda", "12.9.1", "vllm")] == ("0.16.0", "0.15.1")
    assert ("cuda", "12.6.3", "vllm") not in got  # its 0.14.1 is deprecated
    assert got[("cann", "8.5.0/a3", "vllm")] == ("0.15.1",)  # 0.16 waits for vllm-ascend 0.16
    assert got[("rocm", "6.4.4", "sglang")] == ("0.5.9",)
    assert not [k for k in got if k[0] in ("dtk", "maca", "hggc", "musa", "corex")]  # vendor images decide
    result = propose(doc.data, index)
    assert "cann: vllm 0.16.0 waits for a vllm-ascend 0.16 release" in result.waiting
    assert any(n.startswith("maca:") and "vendor" in n for n in result.not_checked)
    assert propose(doc.data, _index(vllm="0.14.1", sglang="0.5.8", vox_box="0.0.21")).proposals == []


def test_the_edit_keeps_comments_and_style_and_the_matrix_validates(tmp_path):
    doc = load_marked(MATRIX, "matrix.yaml")
    index = _index(vllm="0.15.1 0.14.1", vllm_ascend="0.15.0rc1", sglang="0.5.9", vox_box="0.0.22")
    proposals = propose(doc.data, index).proposals
    edited = apply(MATRIX, doc, [p.insertion for p in proposals])
    removed = [line for line in MATRIX.splitlines() if line not in edited.splitlines()]
    assert all("[" in line for line in removed)  # only flow lists changed in place; every comment is kept
    assert "          vllm: [0.15.1, 0.14.1, {version: 0.13.0, status: polished}, 0.12.0, 0.11.2]" in edited
    assert "            - {version: 0.5.9, archs: [gfx942]}\n            - {version: 0.5.8, archs: [gfx942]}" in edited
    assert "sglang: [{version: 0.5.9, platforms: [linux/arm64]}, {version: 0.5.8, platforms: [linux/arm64]}]" in edited
    (tmp_path / "matrix.yaml").write_text(edited)
    project = load_project(tmp_path / "matrix.yaml", ROOT / "pack")
    tags = {t.tag for t in project.targets}
    assert {"cuda12.9-vllm0.15.1", "rocm6.4-sglang0.5.9", "cann8.5-310p-vllm0.15.1", "cuda12.8-voxbox0.0.22"} <= tags


def test_a_new_entry_is_quoted_where_yaml_would_read_a_number():
    assert entry_text("0.15.1", "0.14.1") == "0.15.1"
    assert entry_text("1.5", {"version": "1.4", "archs": ["7.5", "8.0+PTX"]}) == '{version: "1.5", archs: ["7.5", 8.0+PTX]}'


def test_pins_compare_their_highest_version_per_scope():
    def record(backend, version, deps):
        return RunnerRecord(backend=backend, backend_version=version, original_backend_version=version,
                            backend_variant="", service="vllm", service_version="0.14.1", platform="linux/amd64",
                            docker_image="x/y:z", dependencies=deps)
    from runner.compose.outdated import Outdated

    out = Outdated()
    newer_pins([record("cuda", "12.8", {"torch": "2.9.1+cu128", "ray": ">=2.47.1,<=2.48.0", "vllm-omni": "2c294a7"}),
                record("cann", "8.5", {"torch": "2.9.0", "lmcache": "0.3.12"})],
               _index(torch="2.10.0 2.9.1", ray="2.48.0", lmcache="0.4.0 0.3.12", vllm_omni="0.14.0"), out)
    assert [(p.package, p.scope, p.pinned, p.newest) for p in out.pins] == [
        ("lmcache", "all", "0.3.12", "0.4.0"), ("torch", "cuda12.8", "2.9.1+cu128", "2.10.0")]
    assert any("vllm-omni: pinned by git commit (2c294a7)" in n for n in out.not_checked)


def _fixture(tmp_path, versions: str):
    (tmp_path / "pack").symlink_to(ROOT / "pack")
    cuda = MATRIX[MATRIX.index("  cuda:\n"):MATRIX.index("\n  dtk:")]
    head = MATRIX[:MATRIX.index("backends:\n")]
    release = cuda[:cuda.index("      - version: 12.9.1")] + (
        "      - version: 12.8.1\n        archs: [\"7.5\", \"8.0+PTX\"]\n        services:\n"
        f"          voxbox:\n            - {versions}  # kept for the oldest deployments\n")
    path = tmp_path / "matrix.yaml"
    path.write_text(head + "backends:\n" + release)
    return path


def test_a_real_run_against_the_package_index_proposes_and_writes(tmp_path):
    """vox-box has released past 0.0.19 (0.0.20 and 0.0.21 at least): the index's answer is real."""
    matrix = _fixture(tmp_path, "0.0.19")
    before = matrix.read_text()
    run = subprocess.run([sys.executable, "-m", "runner", "outdated", "--matrix", str(matrix), "--service", "voxbox",
                          "--no-resolve", "--format", "json", "--write"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    voxbox = [p for p in report["proposals"] if p["service"] == "voxbox"]
    assert voxbox and "0.0.21" in voxbox[0]["versions"] and "0.0.20" in voxbox[0]["versions"]
    after = matrix.read_text()
    assert "# kept for the oldest deployments" in after and after != before
    assert after.index("- 0.0.21") < after.index("- 0.0.20") < after.index("- 0.0.19")
    assert report["catalog_diff"]["counts"]["cuda"]["added"] == len(voxbox[0]["versions"])
    assert any("not reachable from here" in n for n in report["not_checked"])
    # the written matrix is current now: nothing newer, exit 0
    again = subprocess.run([sys.executable, "-m", "runner", "outdated", "--matrix", str(matrix), "--service", "voxbox",
                            "--no-resolve"], capture_output=True, text=True, timeout=600)
    assert again.returncode in (0, 1) and "voxbox" not in again.stdout.split("### Not checked")[0], again.stdout


def test_a_bad_matrix_is_exit_2_with_its_line(tmp_path, capsys):
    from runner.cli import main

    bad = tmp_path / "matrix.yaml"
    shutil.copy(ROOT / "matrix.yaml", bad)
    (tmp_path / "pack").symlink_to(ROOT / "pack")
    bad.write_text(bad.read_text().replace("namespace: gpustack", "namespace: [gpustack"))
    assert main(["outdated", "--matrix", str(bad), "--no-resolve"]) == 2
    assert f"{bad}:" in capsys.readouterr().err
