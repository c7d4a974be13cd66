"""`runner catalog --diff OLD NEW`: our packaged catalog against gpustack-runner 0.1.32.post1's own
(from its installed wheel), against a git revision, against edited copies; bad input exits 2 naming
file, line and value."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from runner.cli import main
from runner.compose.catalog_sources import load_source
from runner.model import catalog
from runner.model.catalog_diff import diff
from runner.verify.consumer_env import UPSTREAM_RUNNER, environment
from tests.conftest import ROOT
from tests.e2e.infra import TEST_CACHE


def _edited(tmp_path: Path, edit) -> Path:
    data = json.loads(catalog.PACKAGED.read_text())
    edit(data)
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def test_every_kind_of_change_is_found_per_backend(tmp_path):
    def edit(data):
        data[:] = [r for r in data if r["docker_image"] != "gpustack/runner:cuda12.8-vllm0.12.0"]  # removed
        for r in data:
            if r["docker_image"].endswith("cuda12.9-vllm0.14.1"):
                r["deprecated"] = True
            if r["docker_image"].endswith("rocm6.4-vllm0.12.0"):
                r["deprecated"] = False
            if r["docker_image"].endswith("cann8.5-a3-sglang0.5.8"):
                r["platform"] = "linux/amd64"
        data.append({**data[0], "docker_image": "gpustack/runner:cuda13.0-vllm0.33.0", "backend": "cuda",
                     "service": "vllm", "service_version": "0.33.0", "backend_variant": ""})
    new = _edited(tmp_path, edit)
    result = diff(catalog.load(), load_source(str(new))[0])
    got = {(c.kind, c.tag) for c in result.changes}
    assert got == {("removed", "cuda12.8-vllm0.12.0"), ("deprecated", "cuda12.9-vllm0.14.1"),
                   ("undeprecated", "rocm6.4-vllm0.12.0"), ("platforms", "cann8.5-a3-sglang0.5.8"),
                   ("added", "cuda13.0-vllm0.33.0")}
    moved = next(c for c in result.changes if c.kind == "platforms")
    assert (moved.platforms_added, moved.platforms_removed) == (("linux/amd64",), ("linux/arm64",))
    assert result.counts() == {"cann": {"platforms": 1},
                               "cuda": {"added": 1, "deprecated": 1, "removed": 1}, "rocm": {"undeprecated": 1}}
    text = result.markdown()
    assert "| cuda | 1 | 1 | 0 | 1 | 0 |" in text and "- `cann8.5-a3-sglang0.5.8` (+linux/amd64, -linux/arm64)" in text


def test_the_same_catalog_has_no_change_and_the_cli_says_so(capsys):
    assert main(["catalog", "--diff", str(catalog.PACKAGED), str(catalog.PACKAGED)]) == 0
    assert "No image changed." in capsys.readouterr().out


def test_a_git_revision_is_read_from_the_repository(capsys):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    records, label = load_source(f"{head}:src/runner/catalog.json", ROOT)
    assert label.startswith(head) and len(records) > 100


@pytest.mark.parametrize("text, where, words", [
    ('[\n  {"backend": "cuda",\n  }\n]', ":3:3", "not JSON"),
    ('{"a": 1}', ":1", "allowed: a JSON list"),
])
def test_bad_json_names_file_and_line(tmp_path, capsys, text, where, words):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert main(["catalog", "--diff", str(bad), str(catalog.PACKAGED)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}{where}" in err and words in err and "Traceback" not in err


def test_a_bad_record_names_its_line_field_value_and_what_is_allowed(tmp_path, capsys):
    def edit(data):
        data[2]["deprecated"] = "yes"
    bad = _edited(tmp_path, edit)
    line = [i + 1 for i, text in enumerate(bad.read_text().splitlines()) if text == "  {"][2]
    assert main(["catalog", "--diff", str(catalog.PACKAGED), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line}: record 3, deprecated" in err and "'yes'" in err and "allowed: true or false" in err


def test_an_unknown_source_says_what_a_source_may_be(capsys):
    assert main(["catalog", "--diff", "no-such-rev-xyz", str(catalog.PACKAGED)]) == 2
    err = capsys.readouterr().err
    assert "'no-such-rev-xyz'" in err and "gpustack-runner wheel" in err and "git revision" in err


@pytest.mark.consumer
def test_ours_against_gpustack_runner_0_1_32_post1(tmp_path, capsys):
    """The real comparison: our catalog against the one GPUStack installs today (from its wheel's
    installed files, packed back into a wheel to read it as `pip download` leaves it)."""
    python = environment(ROOT / "pack", UPSTREAM_RUNNER, TEST_CACHE / "consumer")
    packaged = next(python.parent.parent.glob("lib/python3*/site-packages/gpustack_runner/runner.py.json"))
    wheel = tmp_path / "gpustack_runner-0.1.32.post1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(packaged, "gpustack_runner/runner.py.json")
    theirs = load_source(str(wheel))[0]
    assert theirs == load_source(str(packaged))[0]
    result = diff(catalog.load(), theirs)
    counts = result.counts()
    added = {c.tag for c in result.changes if c.kind == "added"}
    ours = {r.docker_image.rpartition(":")[2] for r in catalog.load()}
    assert added == {r.docker_image.rpartition(":")[2] for r in theirs} - ours
    assert added == set()  # the matrix lists every image of theirs (tests/test_upstream_matrix.py explains the rest)
    removed = {c.tag for c in result.changes if c.kind == "removed"}
    assert removed == ours - {r.docker_image.rpartition(":")[2] for r in theirs} and "musa4.3-sglang0.5.2" in removed
    assert sum(per.get("removed", 0) for per in counts.values()) == len(removed)
    assert main(["catalog", "--diff", str(catalog.PACKAGED), str(wheel), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"] == counts and shown["new_images"] == len({r.docker_image for r in theirs})
