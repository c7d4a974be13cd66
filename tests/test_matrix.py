"""matrix.yaml: the seed's whole table, and clear errors for every kind of mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.model.errors import UserError
from runner.compose.project import load_project
from tests.conftest import ROOT, SEED_MATRIX

# The "Onboard Services" table of seed 000, counted by hand: (backend, short version, variant) -> services.
SEED_COUNTS = {
    ("cann", "8.5", "a3"): 4, ("cann", "8.5", "910b"): 4, ("cann", "8.5", "310p"): 2,
    ("cann", "8.3", "a3"): 5, ("cann", "8.3", "910b"): 5, ("cann", "8.3", "310p"): 1,
    ("cann", "8.2", "a3"): 5, ("cann", "8.2", "910b"): 8, ("cann", "8.2", "310p"): 3,
    ("corex", "4.2", ""): 1, ("cuda", "12.9", ""): 7, ("cuda", "12.8", ""): 11, ("cuda", "12.6", ""): 6,
    ("dtk", "25.04", ""): 3, ("hggc", "12.3", ""): 2, ("maca", "3.3", ""): 2, ("maca", "3.2", ""): 1,
    ("maca", "3.0", ""): 1, ("musa", "4.3", ""): 1, ("musa", "4.1", ""): 1, ("rocm", "7.0", ""): 7,
    ("rocm", "6.4", ""): 9,
}


def test_the_whole_seed_table_is_there(project):
    """The January table (tests/fixtures/matrix-seed.yaml) is kept whole, row by row, inside the matrix of
    gpustack-runner 0.1.32.post1 (tests/test_upstream_matrix.py checks that one against its catalog)."""
    from runner.compose.project import _validate

    seed = _validate(SEED_MATRIX, ROOT / "pack")
    counts: dict[tuple, int] = {}
    for t in seed.targets:
        key = (t.backend, t.backend_version, t.variant)
        counts[key] = counts.get(key, 0) + 1
    assert counts == SEED_COUNTS and len(seed.targets) == 89
    now = {t.tag: t for t in project.targets}
    for t in seed.targets:
        assert t.tag in now, t.tag
        assert (now[t.tag].platforms, now[t.tag].status, now[t.tag].base_image) == (t.platforms, t.status, t.base_image), t.tag
    assert len(project.targets) == 246


def test_statuses_follow_the_seed_formatting_and_upstreams_deprecations(project):
    """Deprecated as gpustack-runner 0.1.32.post1's catalog publishes it (tests/test_upstream_matrix.py
    compares the two catalogs record by record); polished as the seed table marks it."""
    by_status = {s: sorted(t.tag for t in project.targets if t.status == s) for s in ("deprecated", "polished")}
    assert len(by_status["deprecated"]) == 46
    assert {"cuda12.4-vllm0.10.0", "rocm6.3-vllm0.10.0", "cann8.2-910b-mindie2.1.rc1", "rocm6.4-sglang0.5.8.post1",
            "cuda12.6-vllm0.15.1", "cuda12.8-sglang0.5.5"} <= set(by_status["deprecated"])
    assert not any(t.startswith(("cuda13", "rocm7.2", "cann9")) for t in by_status["deprecated"])
    assert by_status["polished"] == sorted([f"cuda{v}-vllm0.13.0" for v in ("12.9", "12.8")] + ["rocm7.0-vllm0.13.0"])


def test_full_versions_platforms_and_archs_follow_the_facts(project):
    t = {x.tag: x for x in project.targets}
    assert t["cuda12.8-vllm0.14.1"].original_backend_version == "12.8.1"
    assert t["cuda12.8-vllm0.14.1"].base_image == "nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04"
    assert t["cuda12.9-vllm0.14.1"].archs == ("7.5", "8.0+PTX", "8.9", "9.0", "10.0", "10.3", "12.0", "12.1+PTX")
    assert t["cann8.2-910b-vllm0.9.2"].original_backend_version == "8.2.rc1"
    assert t["cann8.2-910b-vllm0.9.2"].base_image == "quay.io/ascend/cann:8.2.rc1-910b-ubuntu22.04-py3.11"
    assert t["cann8.5-a3-sglang0.5.8"].platforms == ("linux/arm64",)
    assert t["cann8.2-a3-sglang0.5.2"].platforms == ("linux/amd64", "linux/arm64")
    assert t["rocm6.4-sglang0.5.8"].archs == ("gfx942",)
    assert t["rocm7.0-sglang0.5.8"].archs == ("gfx950",)
    assert "gfx1151" not in t["rocm7.0-vllm0.11.2"].archs and "gfx1151" in t["rocm7.0-vllm0.12.0"].archs
    assert t["rocm6.4-vllm0.13.0"].archs == ("gfx908", "gfx90a", "gfx942")
    assert t["dtk25.04-vllm0.8.5"].original_backend_version == "25.04.1"
    assert t["maca3.3-sglang0.5.6"].base_image == "gpustack/runner:maca3.3.0-20251231-sglang-python3.10-vanilla"
    assert t["hggc12.3-sglang0.5.5"].base_image == "gpustack/runner:hggc12.3-20260111-sglang-python3.12-vanilla"
    assert {x.python for x in project.targets if x.backend == "cuda"} == {"3.12"}
    assert all(x.platforms == ("linux/amd64",) for x in project.targets if x.backend not in ("cuda", "cann"))


def _break(workdir: Path, old: str, new: str, count: int = 1) -> Path:
    text = (workdir / "matrix.yaml").read_text()
    assert old in text, old
    (workdir / "matrix.yaml").write_text(text.replace(old, new, count))
    return workdir / "matrix.yaml"


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old,new,needle,message,allowed", [
    ("  cuda:\n", "  cudaa:\n", "cudaa:", "unknown backend: 'cudaa'", "cann, corex, cuda"),
    ("    title: NVIDIA CUDA\n", "    title: NVIDIA CUDA\n    colour: green\n", "colour", "unknown key: 'colour'", "title, python"),
    ("vllm: [0.8.3]", "vllm: [0.8.3x]", "0.8.3x", "malformed version '0.8.3x'", None),
    ("      - version: 4.2.0\n", "      - version: 4.2.0\n        variant: big\n", "variant: big", "backend 'corex' has no variants", None),
    ("voxbox: [0.0.21]", "voxbx: [0.0.21]", "voxbx", "unknown service for backend 'cuda': 'voxbx'", "sglang, vllm, voxbox"),
    ("vllm: [0.11.1]", "vllm: [0.11.1, 0.11.1]", "0.11.1, 0.11.1", "duplicate target: 'hggc12.3-vllm0.11.1'", None),
    ("    platforms: [linux/amd64]\n    base_image: gpustack/runner:corex", "    platforms: [linux/riscv64]\n    base_image: gpustack/runner:corex",
     "riscv64", "bad value for 'platforms': 'linux/riscv64'", "linux/amd64 or linux/arm64"),
    ("        variant: 310p\n        archs: [ascend310p1]\n        services:\n          mindie: [2.3.0]",
     "        variant: 310x\n        archs: [ascend310p1]\n        services:\n          mindie: [2.3.0]", "310x", "unknown variant: '310x'", "a3, 910b, 310p"),
    ("base_image: rocm/dev-ubuntu-22.04:{version}-complete", "base_image: rocm/dev-ubuntu-22.04:{versoin}-complete",
     "versoin", "unknown placeholder {versoin}", None),
])
def test_mistakes_name_file_line_value_and_what_is_allowed(workdir, old, new, needle, message, allowed):
    path = _break(workdir, old, new)
    with pytest.raises(UserError) as e:
        load_project(path)
    text = str(e.value)
    assert f"{path}:{_line_of(path, needle)}:" in text
    assert message in text
    if allowed:
        assert f"(allowed: {allowed}" in text


def test_a_yaml_syntax_error_has_line_and_column(workdir):
    path = _break(workdir, "backends:\n", "backends: [\n")
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}:\d+:\d+: YAML syntax error"):
        load_project(path)


@pytest.mark.parametrize("text,message", [
    ("- 1\n", "the top level must be a mapping with 'backends'"),
    ("namespace: x\n", "missing key 'backends'"),
    ("backends: {}\nbackends: {}\n", "key written twice"),
])
def test_wrong_top_levels_are_refused(workdir, text, message):
    (workdir / "matrix.yaml").write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_project(workdir / "matrix.yaml")


def test_numbers_stay_version_strings(workdir):
    # 12.3 unquoted must stay "12.3", and 12.30 must not silently become 12.3.
    path = _break(workdir, 'version: "12.3"', "version: 12.30")
    tags = {t.tag for t in load_project(path).targets}
    assert "hggc12.30-vllm0.11.1" in tags


def test_one_line_adds_a_service_version(workdir):
    path = _break(workdir, "vllm: [0.8.3]", "vllm: [0.8.3, 0.9.0]")
    tags = {t.tag for t in load_project(path).targets}
    assert "corex4.2-vllm0.9.0" in tags and len(tags) == 90


def test_the_cache_follows_edits(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "c"))
    first = load_project(workdir / "matrix.yaml")
    again = load_project(workdir / "matrix.yaml")
    assert again.targets == first.targets and again._recipes is None  # served from the cache
    _break(workdir, "vllm: [0.8.3]", "vllm: [0.8.4]")
    assert "corex4.2-vllm0.8.4" in {t.tag for t in load_project(workdir / "matrix.yaml").targets}
    _break(workdir, "vllm: [0.8.4]", "vllm: [0.8.4y]")
    with pytest.raises(UserError):
        load_project(workdir / "matrix.yaml")


def test_schema_knows_the_recipes_and_accepts_the_matrix(project):
    import jsonschema
    import yaml

    from runner.compose.schema import matrix_schema

    schema = matrix_schema(project.pack_path)
    assert schema["properties"]["backends"]["propertyNames"]["enum"] == sorted(project.recipes)
    data = yaml.safe_load(project.matrix_path.read_text().replace('"12.3"', '"12.3"'))
    jsonschema.validate(data, schema)
    bad = {**data, "colour": "green"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_committed_schema_is_current(project):
    # matrix.yaml points editors at matrix.schema.json; regenerate with `runner schema > matrix.schema.json`
    import json

    from runner.compose.schema import matrix_schema

    assert json.loads((project.matrix_path.parent / "matrix.schema.json").read_text()) == matrix_schema(project.pack_path)
