"""One selection for targets and catalog records: the same filters from the CLI, the catalog and a CI
job's JSON, gpustack-runner's prefix rule, and glob patterns over tags."""

from __future__ import annotations

import json

import pytest

from runner.compose.catalog_records import catalog_records
from runner.compose.project import load_project
from runner.model.catalog_query import filter_runners
from runner.model.errors import UserError
from runner.model.selection import Selection
from tests.test_cli import run


@pytest.fixture(scope="module")
def project():
    return load_project()


def test_targets_and_records_are_selected_alike(project):
    records = catalog_records(project, project.targets, project.image)
    for sel in (Selection(backend="cuda", backend_version="12"), Selection(service_version="0.5"),
                Selection(select="cann8.5-* rocm*", skip="*-vllm*"), Selection(platform="linux/arm64"),
                Selection(include_deprecated=False, service_version_prefix="0.1")):
        by_target = {(t.tag, p) for t in sel.apply(project.targets) for p in t.platforms}
        by_record = {(r.docker_image.rsplit(":", 1)[1], r.platform) for r in sel.records(records)}
        assert by_target == by_record and by_target, sel


def test_prefix_filters_follow_list_runners(project):
    records = catalog_records(project, project.targets, project.image)
    for field in ("backend_version_prefix", "service_version_prefix"):
        for value in ("12", "0.1", "8.5", "0.14"):
            ours = Selection(**{field: value}).records(records)
            theirs = filter_runners(records, **{field: value})
            assert ours == theirs, (field, value)
    # whole dotted parts on the command line; gpustack-runner's rule lets "0.1" begin "0.14.1"
    assert not Selection(service_version="0.1").apply(project.targets) or all(
        t.service_version.startswith("0.1.") for t in Selection(service_version="0.1").apply(project.targets))
    assert any(t.service_version.startswith("0.14") for t in Selection(service_version_prefix="0.1").apply(project.targets))


def test_globs_select_and_skip_tags(project):
    kept = Selection(select="cuda12.* rocm7.*", skip="*-sglang* *voxbox*").apply(project.targets)
    assert kept and all(t.tag.startswith(("cuda12.", "rocm7.")) for t in kept)
    assert not any("sglang" in t.tag or "voxbox" in t.tag for t in kept)
    assert {t.tag for t in kept} == {
        t.tag for t in project.targets
        if ((t.backend, t.backend_version.split(".")[0]) in {("cuda", "12"), ("rocm", "7")})
        and t.service not in ("sglang", "voxbox")}


def test_a_pattern_that_matches_nothing_is_refused(project):
    with pytest.raises(UserError, match="select pattern matches no target") as e:
        project.select(Selection(select="cuda12.8-vlm*"))
    assert e.value.value == "cuda12.8-vlm*"


def test_the_new_fields_travel_in_a_ci_jobs_json():
    sel = Selection(backend="cuda", select="cuda12.*", skip="*-dev", service_version_prefix="0.14")
    assert Selection.from_json(sel.to_json()) == sel
    assert json.loads(sel.to_json()) == {"backend": "cuda", "select": "cuda12.*", "skip": "*-dev",
                                         "service_version_prefix": "0.14"}


def test_the_cli_selects_by_glob_and_prefix():
    tags = run("matrix", "--select", "cuda12.*-vllm0.14*", "--skip", "cuda12.6-*", "--format", "tags").stdout.split()
    assert tags and all(t.startswith("cuda12.") and "-vllm0.14" in t and not t.startswith("cuda12.6-") for t in tags)
    bad = run("matrix", "--select", "cuda12.8-vlm*")
    assert bad.returncode == 2 and "cuda12.8-vlm*" in bad.stderr and "Traceback" not in bad.stderr
    out = run("catalog", "--backend", "cuda", "--service-version-prefix", "0.14", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert {r["service_version"][:4] for r in json.loads(out.stdout)} == {"0.14"}
