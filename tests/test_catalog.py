"""The consumer catalog and list_runners."""

from __future__ import annotations

import json

import pytest

from runner import list_runners
from runner.model import catalog


def test_packaged_catalog_is_in_step_with_the_matrix(project):
    expected = catalog.records(project.targets, project.image)
    assert catalog.load() == sorted(expected, key=lambda r: (r.backend, r.docker_image, r.platform)), \
        "run `runner catalog --write src/runner/catalog.json`"


def test_one_record_per_target_and_platform(project):
    records = catalog.load()
    assert len(records) == sum(len(t.platforms) for t in project.targets) == 144
    r = next(r for r in records if r.docker_image.endswith("cann8.2-910b-vllm0.9.2") and r.platform == "linux/arm64")
    assert r.model_dump() == {
        "backend": "cann", "backend_version": "8.2", "original_backend_version": "8.2.rc1", "backend_variant": "910b",
        "service": "vllm", "service_version": "0.9.2", "platform": "linux/arm64",
        "docker_image": "gpustack/runner:cann8.2-910b-vllm0.9.2", "deprecated": False}


def test_list_runners_filters():
    got = list_runners(backend="cuda", backend_version="12.8", service="vllm", service_version="0.14")
    assert {(r.docker_image, r.platform) for r in got} == {
        ("gpustack/runner:cuda12.8-vllm0.14.1", "linux/amd64"), ("gpustack/runner:cuda12.8-vllm0.14.1", "linux/arm64")}
    assert {r.backend_version for r in list_runners(backend="cuda", backend_version="12")} == {"12.9", "12.8", "12.6"}
    assert list_runners(backend="cuda", backend_version="12.8.1", service="voxbox")[0].original_backend_version == "12.8.1"
    assert not list_runners(service="vllm", service_version="0.1")  # whole parts only: 0.1 is not 0.14
    assert {r.backend_variant for r in list_runners(backend="cann", backend_variant="310p")} == {"310p"}
    assert all(r.platform == "linux/arm64" for r in list_runners(platform="linux/arm64"))
    deprecated = {r.docker_image for r in list_runners(with_deprecated=True)} - {r.docker_image for r in list_runners()}
    assert deprecated == {"gpustack/runner:cann8.2-a3-vllm0.10.1.1", "gpustack/runner:cann8.2-910b-vllm0.10.1.1",
                          "gpustack/runner:cann8.2-910b-vllm0.9.1", "gpustack/runner:cuda12.8-sglang0.5.4.post3"}


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
