"""The consumer catalog and list_runners."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runner import list_runners
from runner.model import catalog
from runner.model.errors import UserError
from tests.conftest import ROOT


def test_packaged_catalog_is_in_step_with_the_matrix(project):
    from runner.compose.catalog_records import catalog_records

    expected = catalog_records(project, project.targets, project.image)
    assert catalog.load() == sorted(expected, key=lambda r: (r.backend, r.docker_image, r.platform)), \
        "run `runner catalog --write src/runner/catalog.json`"


def test_one_record_per_target_and_platform(project):
    records = catalog.load()
    assert len(records) == sum(len(t.platforms) for t in project.targets) == 404
    r = next(r for r in records if r.docker_image.endswith("cann8.2-910b-vllm0.9.2") and r.platform == "linux/arm64")
    assert r.as_json() == {
        "backend": "cann", "backend_version": "8.2", "original_backend_version": "8.2.rc1", "backend_variant": "910b",
        "service": "vllm", "service_version": "0.9.2", "platform": "linux/arm64",
        "docker_image": "gpustack/runner:cann8.2-910b-vllm0.9.2", "deprecated": True,
        "dependencies": {"torch": "2.5.1", "torch-npu": "2.5.1.post1.dev20250619", "vllm": "0.9.2", "vllm-ascend": "0.9.2rc1"}}


def test_dependencies_come_from_the_recipe_components():
    (amd64,) = list_runners(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1",
                            platform="linux/amd64")
    assert amd64.dependencies == {"flash-attn": "2.8.3", "flashinfer-python": "0.5.3", "lmcache": "0.3.12",
                                  "mooncake-transfer-engine": "0.3.8.post1", "torch": "2.9.1", "vllm": "0.14.1",
                                  "vllm-omni": "2c294a7"}
    (arm64,) = list_runners(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1",
                            platform="linux/arm64")
    assert "flash-attn" not in arm64.dependencies  # the recipe builds it for amd64 only
    # GPUStack finds the images that carry a package, e.g. a cache service its LMCache
    with_lmcache = {r.docker_image for r in list_runners(dependencies=(("lmcache", ">=0.3"),))}
    assert "gpustack/runner:cuda12.8-vllm0.14.1" in with_lmcache and "gpustack/runner:corex4.2-vllm0.8.3" not in with_lmcache
    assert not list_runners(dependencies=(("lmcache", ">=9"),))
    with pytest.raises(UserError, match="not a version specifier for dependency 'lmcache'"):
        list_runners(dependencies=(("lmcache", "newest"),))


def test_list_runners_has_gpustack_runners_filter_semantics():
    got = list_runners(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")
    assert {(r.docker_image, r.platform) for r in got} == {
        ("gpustack/runner:cuda12.8-vllm0.14.1", "linux/amd64"), ("gpustack/runner:cuda12.8-vllm0.14.1", "linux/arm64")}
    assert not list_runners(service="sglang", service_version="0.5.8.post")  # versions are exact
    assert not list_runners(service="vllm", service_version="0.14")
    assert {r.service_version for r in list_runners(service="vllm", service_version_prefix="0.14")} == {"0.14.1", "0.14.0"}
    assert {r.backend_version for r in list_runners(backend="cuda", backend_version_prefix="12")} == {"12.9", "12.8", "12.6", "12.4"}
    assert {r.backend_variant for r in list_runners(backend="cann", backend_variant="310p")} == {"310p"}
    assert all(r.platform == "linux/arm64" for r in list_runners(platform="linux/arm64"))
    # deprecated records are in unless left out, as gpustack-runner does (and GPUStack asks for Auto)
    everything = list_runners()
    assert any(r.deprecated for r in everything) and len(everything) == len(catalog.load())
    assert not any(r.deprecated for r in list_runners(with_deprecated=False))
    assert list_runners(todict=True, backend="corex")[0]["docker_image"] == "gpustack/runner:corex4.2-vllm0.8.3"
    with pytest.raises(UserError, match="unknown catalog filter: 'variant'"):
        list_runners(variant="910b")


def test_grouped_views_are_gpustack_runners(project):
    from runner import list_backend_runners, list_service_runners

    (cuda,) = list_backend_runners(backend="cuda", service="voxbox")
    assert [v["version"] for v in cuda["versions"]] == ["12.8", "12.6", "12.4"]  # newest first
    (service,) = cuda["versions"][0]["variants"][0]["services"]
    assert service["versions"][0] == {"version": "0.0.21", "deprecated": False, "platforms": [
        {"platform": "linux/amd64", "docker_image": "gpustack/runner:cuda12.8-voxbox0.0.21"},
        {"platform": "linux/arm64", "docker_image": "gpustack/runner:cuda12.8-voxbox0.0.21"}]}
    (sglang,) = list_service_runners(service="sglang", backend="rocm")
    assert [v["version"] for v in sglang["versions"]][:2] == ["0.5.22", "0.5.21"]  # newest first
    rocm = next(v for v in sglang["versions"] if v["version"] == "0.5.7")["backends"][0]["versions"]
    assert [(v["version"], v["variants"][0]["deprecated"]) for v in rocm] == [("7.0", False), ("6.4", True)]


def test_runner_parse_reports_every_bad_name():
    done = subprocess.run([sys.executable, "-m", "runner", "parse", "gpustack/runner:cuda12.8-vllm0.14.1", "nope:1",
                           "gpustack/runner:tpu1-vllm0.1", "gpustack/runner:rocm7.0-sglang0.5.8"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert [json.loads(line)["tag"] for line in done.stdout.splitlines()] == ["cuda12.8-vllm0.14.1", "rocm7.0-sglang0.5.8"]
    assert "nope:1: cannot read" in done.stderr and "tpu1-vllm0.1" in done.stderr and "Traceback" not in done.stderr


def test_write_is_atomic_and_leaves_nothing_behind(tmp_path):
    records = catalog.load()[:3]
    target = tmp_path / "cat.json"
    catalog.write(target, records)
    assert catalog.load(target) == sorted(records, key=lambda r: (r.backend, r.docker_image, r.platform))

    class Boom(Exception):
        pass

    original = catalog.dump
    try:
        catalog.dump = lambda items: (_ for _ in ()).throw(Boom())
        with pytest.raises(Boom):
            catalog.write(target, records[:1])
    finally:
        catalog.dump = original
    assert len(json.loads(target.read_text())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["cat.json"]
