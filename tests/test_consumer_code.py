"""The consumer's own code, installed from the package index at the pinned versions (pack/_consumer/*.txt,
kept under ~/.cache/runner-tests/consumer): GPUStack 2.3.0 still starts what pack/_consumer records,
gpustack-runtime 0.2.6 still profiles devices as recorded, gpustack-runner and GPUStack's runner-source
parser read our catalog as we do, and our loader reads gpustack-runner's own catalog."""

from __future__ import annotations

import json
import time

import pytest

from runner.compose.catalog_records import catalog_records
from runner.model import catalog, catalog_query
from runner.verify import consumer, consumer_refresh
from runner.verify.consumer_env import GPUSTACK, UPSTREAM_RUNNER, environment, run
from runner.verify.probes import components
from runner.verify.profiles import consumer_differences, load_profile
from tests.conftest import ROOT
from tests.e2e.infra import TEST_CACHE

pytestmark = pytest.mark.consumer
PACK = ROOT / "pack"
ENVS = TEST_CACHE / "consumer"
# the real-service stand-ins' targets, and a target of each service on Ascend and of vLLM on AMD and
# MetaX (`runner consumer` starts them all, about six times as many; this keeps CI's share small)
SAMPLE = ("cuda12.8-vllm0.14.1", "cuda12.8-sglang0.5.8", "cuda12.8-voxbox0.0.21", "cann8.5-310p-vllm0.14.1",
          "cann8.5-a3-sglang0.5.8", "cann8.5-910b-mindie2.3.0", "rocm7.0-vllm0.14.1", "maca3.3-vllm0.11.2")
QUERIES = [
    {}, {"backend": "cuda", "service": "vllm", "service_version": "0.14.1"}, {"service": "sglang", "service_version": "0.5.8"},
    {"service": "sglang", "service_version": "0.5.8.post1"}, {"backend": "cuda", "backend_version_prefix": "12"},
    {"service": "vllm", "service_version_prefix": "0.1", "with_deprecated": False},
    {"backend": "cann", "backend_variant": "310p", "platform": "linux/arm64"},
    {"dependencies": [["lmcache", ">=0.3"]]}, {"dependencies": [["vllm-omni", ""]], "with_unknown_dependencies": False},
]


def _timed(what, call, *args):
    start = time.monotonic()
    try:
        return call(*args)
    finally:
        print(f"[consumer] {what}: {time.monotonic() - start:.0f} s")


@pytest.fixture(scope="module")
def gpustack():
    return _timed("install GPUStack 2.3.0 (cached)", environment, PACK, GPUSTACK, ENVS)


@pytest.fixture(scope="module")
def upstream_runner():
    return _timed("install gpustack-runner 0.1.32.post1 (cached)", environment, PACK, UPSTREAM_RUNNER, ENVS)


def _without_targets(started: list[tuple[str, consumer.Started]]) -> list:
    return [(name, s.model_dump(exclude={"targets"})) for name, s in started]


@pytest.fixture(scope="module")
def started(project, gpustack):
    """GPUStack 2.3.0's backend classes started now for a sample of targets, and gpustack-runtime's
    profiles of every backend (`runner consumer` starts every target)."""
    spec = consumer.load_spec(PACK)
    asked = [c for c in consumer_refresh.cases(project, spec, lambda t: components(project.leaf_stage(t.tag)))
             if c["target"] in SAMPLE]
    records = [r.as_json() for r in catalog_records(project, project.targets, project.image)]
    answer = _timed(f"GPUStack starts {len(asked)} deployments", run, gpustack, "workloads",
                    {"catalog": records, "cases": asked, "profiles": sorted(project.services)})
    return consumer_refresh.record(project, spec, asked, answer), answer["profiles"]


def test_gpustack_still_starts_what_the_record_holds(started):
    now, committed = started[0], consumer.load_record(PACK)
    assert (now.gpustack, now.leader, now.followers) == (committed.gpustack, committed.leader, committed.followers)
    for tag in SAMPLE:
        assert _without_targets(now.for_target(tag)) == _without_targets(committed.for_target(tag)), \
            f"{tag}: run `runner consumer` and review the difference"


def test_gpustack_runtime_still_profiles_devices_as_recorded_and_every_difference_is_explained(project, started):
    now = started[1]
    assert now == json.loads((PACK / "_consumer" / "runtime-profiles.json").read_text())
    for backend in project.services:
        differ, problems = consumer_differences(load_profile(PACK, backend), now, backend)
        assert not problems
        assert {"visible_devices", "runtime_env", "shm_size_gib", "privileged"}.isdisjoint(differ), backend


def _catalog_answer(python, path, parse: bool):
    return run(python, "catalog_api", {"catalog": str(path), "queries": QUERIES, "parse": parse})


def _same_as_ours(answer, path):
    for query, runners, backends, services in zip(QUERIES, answer["runners"], answer["backend_runners"],
                                                  answer["service_runners"]):
        kw = {k: tuple(map(tuple, v)) if k == "dependencies" else v for k, v in query.items()}
        assert catalog_query.list_runners(catalog=path, todict=True, **kw) == runners, query
        assert catalog_query.list_backend_runners(catalog=path, **kw) == backends, query
        assert catalog_query.list_service_runners(catalog=path, **kw) == services, query


def test_gpustack_and_its_gpustack_runner_read_our_catalog_as_we_do(gpustack):
    answer = _catalog_answer(gpustack, catalog.PACKAGED, parse=True)
    assert answer["version"] == "0.1.31.post4"
    assert answer["runners"][0] == [r.as_json() for r in catalog.load()]  # every record, every field, as written
    _same_as_ours(answer, catalog.PACKAGED)
    parsed = answer["parsed"]  # GPUStack's strict runner-source parser: no field unknown to it, none missing
    assert "error" not in parsed and len(parsed) == len(catalog.load())


def test_the_newest_gpustack_runner_reads_our_catalog_and_we_read_its_own(upstream_runner, tmp_path):
    answer = _catalog_answer(upstream_runner, catalog.PACKAGED, parse=False)
    assert answer["version"] == "0.1.32.post1"
    _same_as_ours(answer, catalog.PACKAGED)
    theirs = tmp_path / "runner.py.json"
    theirs.write_text(json.dumps(answer["packaged"]))
    upstream = catalog.load(theirs)  # every record, `dependencies` included
    assert len(upstream) == len(answer["packaged"]) and sum(r.dependencies is not None for r in upstream) > 0
    _same_as_ours(_catalog_answer(upstream_runner, theirs, parse=False), theirs)
    # the images both catalogs name are deprecated alike (what GPUStack's Auto mode skips)
    ours = {(r.docker_image, r.platform): r for r in catalog.load()}
    shared = [(r, ours[(r.docker_image, r.platform)]) for r in upstream if (r.docker_image, r.platform) in ours]
    assert len(shared) > 100
    assert [(a.docker_image, a.platform) for a, b in shared if a.deprecated != b.deprecated] == []
