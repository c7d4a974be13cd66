"""CI jobs on the Dagger engine, offline (the SDK's own query objects, see tests/test_dagger_module.py):
a job refuses an engine of another platform, a dry run sends no write, a failed leg is recorded for its
run in a real registry, a cross-base stage is looked up under its own bases, and a target taken from
the build cache gets this build's labels."""

from __future__ import annotations

import json

import pytest

from tests.dagger_query import calls  # sets DAGGER_MAIN_OBJECT before dagger loads

import dagger  # noqa: E402
from dagger import dag  # noqa: E402

from runner.compose.plan import make_plan  # noqa: E402
from runner.engines.dagger import DaggerBuilder, StageContainers  # noqa: E402
from runner.model.errors import Failed, UserError  # noqa: E402
from runner.model.targets import Selection  # noqa: E402
from tests.test_dagger_module import _leaves, _runner, local_source  # noqa: E402,F401 - the fixture too


@pytest.fixture
def engine(monkeypatch):
    """The engine's answers offline: its platform is linux/amd64; every other query is recorded and
    answered with an engine error (so a build fails as an engine failure would)."""
    import gql
    from dagger._exceptions import QueryErrorValue  # the shape the SDK gives the engine's error answers
    from dagger.client._core import Context

    sent: list[list[str]] = []

    async def execute(self, return_type=None):
        names = [s.name for s in self.selections]
        if names == ["defaultPlatform"]:
            return dagger.Platform("linux/amd64")
        sent.append(names)
        raise dagger.QueryError([QueryErrorValue("no engine here")], gql.GraphQLRequest("{}"))

    monkeypatch.setattr(Context, "execute", execute)
    return sent


async def test_a_job_runs_on_an_engine_of_its_platform_and_a_dry_run_sends_no_write(project, local_source, engine):
    from runner.compose.jobs import ci_jobs

    selection = Selection(backend="cuda", service="sglang", service_version="0.5.8", include_deprecated=False)
    jobs = ci_jobs(make_plan(selection.apply(project.targets), project.recipes))
    arm = next(j for j in jobs.jobs if j.root.platform == "linux/arm64")
    with pytest.raises(UserError, match="builds for linux/arm64, but this engine runs linux/amd64"):
        await _runner().job(key=arm.key[:16], build_cache="r.example/n/c", selection=selection.to_json(), dry_run=True)
    assert engine == []  # refused before anything was asked of the engine
    leaf = next(j for j in jobs.jobs if j.tag and j.root.platform == "linux/amd64")
    with pytest.raises(Failed, match="no engine here"):
        await _runner().job(key=leaf.key[:16], build_cache="r.example/n/c", selection=selection.to_json(), dry_run=True)
    assert engine and not [q for q in engine if "publish" in q]  # it tried to build, and pushed nothing
    with pytest.raises(UserError, match="give --registry"):
        await _runner().job(key=leaf.key[:16], build_cache="r.example/n/c", selection=selection.to_json())


async def test_a_failed_leg_is_recorded_for_its_run(project, local_source, engine, registry, monkeypatch):
    from runner.compose.jobs import ci_jobs
    from runner.flow import credentials
    from runner.release.registry import Registry
    from runner.release.run_records import RunRecords

    async def plaintext(password):
        return registry.password

    monkeypatch.setattr(credentials, "plaintext", plaintext)
    selection = Selection(backend="cuda", service="sglang", service_version="0.5.8", include_deprecated=False)
    jobs = ci_jobs(make_plan(selection.apply(project.targets), project.recipes))
    # a compiled row (0.5.8.post1 layers an official image, which no digest pins yet: a release refuses it)
    leaf = next(j for j in jobs.jobs if j.tag and j.tag.endswith("-sglang0.5.8") and j.root.platform == "linux/amd64")
    secret = dag.secret("env://REGISTRY_PASSWORD")
    with pytest.raises(Failed, match=f"{leaf.tag} on linux/amd64"):
        await _runner().job(key=leaf.key[:16], build_cache=f"{registry.registry}/dg/runner-build-cache",
                            selection=selection.to_json(), registry=registry.registry, username=registry.username,
                            password=secret, run="r1", namespace="dg")
    async with Registry(registry.registry, registry.username, registry.password) as reg:
        record = await RunRecords(reg, "dg/runner-runs", "r1").leg(leaf.tag, "linux/amd64")
    assert record is not None and not record.passed and "no engine here" in record.reason and record.job == leaf.key[:16]
    assert not [q for q in engine if "publish" in q]


async def test_the_engine_looks_a_cross_base_stage_up_under_its_own_bases(project, registry, engine):
    """A CUDA 12.6 job on the Dagger engine: its inputs must be in the build cache (else it stops before
    building), and the vLLM wheel built on the 12.8.1 chain is found under the 12.8.1 base's digest."""
    from runner.compose.jobs import VLLM_COMPILE, ci_jobs
    from runner.compose.lookup import base_stages, cache_key, stages_under
    from runner.release.build_cache import BuildCache, InputMissing
    from runner.release.registry import Registry

    jobs = ci_jobs(make_plan(Selection(backend="cuda").apply(project.targets), project.recipes))
    leaf = next(j for j in jobs.jobs if j.tag == "cuda12.6-vllm0.14.1" and j.root.platform == "linux/amd64")
    digests = {b: "sha256:" + b.key for b in base_stages(leaf.root)}

    async def base_digest(self, image, platform):  # what the engine would resolve each base image to
        return next(d for b, d in digests.items() if b.image == image)

    async with Registry(registry.registry, registry.username, registry.password) as reg:
        await reg.login()
        cache = BuildCache(reg, "dg/runner-build-cache", jobs.shared(), {k: k for k in leaf.needs})
        builder = DaggerBuilder(StageContainers(), registry.registry, registry.username, None, cache)
        builder.base_digest = base_digest.__get__(builder)
        with pytest.raises(InputMissing, match=r"input \S+ \S+ linux/amd64 failed in job"):
            await builder.build_stage(leaf.root)
        assert engine == []  # stopped before asking the engine to build anything
        config = await reg.upload_blob("dg/runner-build-cache", b"{}")
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [],
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                      "size": 2}}).encode()
        owners = jobs.owners()
        for key in leaf.needs:  # every input published, each under the digests of its own bases
            stage = owners[key].root
            await reg.put_manifest("dg/runner-build-cache", cache_key(stage, digests), body,
                                   "application/vnd.oci.image.manifest.v1+json")
        with pytest.raises(Exception, match="no engine here"):
            await builder.build_stage(leaf.root)
    wheel = next(s for s in stages_under(leaf.root) if s.name == VLLM_COMPILE)
    assert wheel.chain()[0].image != leaf.root.chain()[0].image
    assert builder.stages.substitutes[wheel.key].endswith(cache_key(wheel, digests))


def test_a_cached_target_gets_this_builds_labels(project):
    leaf = _leaves(project, backend="cuda", backend_version="12.8", service="vllm", service_version="0.14.1")[0]
    sc = StageContainers({"revision": "rev2"})
    ref = "r.example/n/runner-build-cache:abc"
    sc.substitute({leaf.stage.key: ref})
    chain = calls(sc.container(leaf.stage))
    assert ("from", {"address": ref}) in chain and not [n for n, _ in chain if n == "withExec"]
    labels = {a["name"]: a["value"] for n, a in chain if n == "withLabel"}
    assert labels["org.opencontainers.image.revision"] == "rev2"
