"""A release bound to its own results, against a real registry (Debian's docker-registry): merge
indexes only the digests its run recorded as tested, whatever the single-arch tags hold; promote takes
only an index its run wrote; a record that lies is refused. The images here are tiny manifests written
through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runner.model.errors import Failed
from runner.model.targets import Selection
from runner.release import publish as flow
from runner.release.registry import Registry
from runner.release.run_records import LegRecord, RunRecords
from runner.release.run_report import run_rows
from runner.ui.release_report import junit, markdown
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "e2e" / "matrix.yaml"
REPO = flow.Repository("", "rec", "runner")


@pytest.fixture(scope="module")
def targets():
    from runner.compose.project import load_project

    return Selection(service_version="0.1.0").apply(load_project(FIXTURE).targets)


async def _image(reg: Registry, tag: str, platform: str, release: str) -> str:
    """A tiny single-arch image manifest under `tag`: what a job of `release` pushed."""
    os_, _, arch = platform.partition("/")
    config = json.dumps({"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": {"release": release}}}).encode()
    digest = await reg.upload_blob(REPO.path, config)
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [],
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                                  "size": len(config)}}).encode()
    return await reg.put_manifest(REPO.path, tag, body, "application/vnd.oci.image.manifest.v1+json")


def _leg(t, platform: str, digest: str = "", reason: str = "") -> LegRecord:
    return LegRecord(tag=t.tag, platform=platform, passed=not reason, digest=digest, reason=reason, job="k")


async def test_merge_and_promote_act_only_on_what_their_run_recorded(registry, targets):
    (t,) = targets
    repo = flow.Repository(registry.registry, REPO.namespace, REPO.name)
    async with Registry(registry.registry, registry.username, registry.password) as reg:
        await reg.login()
        r1, r2 = RunRecords(reg, repo.runs_path, "r1"), RunRecords(reg, repo.runs_path, "r2")
        first = {p: await _image(reg, f"{t.tag}-{p.replace('/', '-')}", p, "r1") for p in t.platforms}
        for p, d in first.items():
            await r1.put_leg(_leg(t, p, d))
        (pub,) = await flow.merge(targets, reg, repo, r1)
        assert not pub.skipped and pub.platforms == first
        r1_index = pub.digest
        # release 2: amd64 passed; arm64's job died before it recorded anything. The arm64 tag still
        # holds release 1's image, and merge must not index it
        amd64 = await _image(reg, f"{t.tag}-linux-amd64", "linux/amd64", "r2")
        await r2.put_leg(_leg(t, "linux/amd64", amd64))
        (pub,) = await flow.merge(targets, reg, repo, r2)
        assert "linux/arm64: not tested in run r2" in pub.skipped and not pub.digest
        assert await reg.digest(repo.path, f"{t.tag}-dev") == r1_index  # the -dev index is release 1's still
        (skipped,) = await flow.promote(targets, reg, repo, None, lambda ts: [], skip_missing=True, run=r2)
        assert "of run r2 is not published" in skipped.skipped
        with pytest.raises(Failed, match="nothing was promoted"):
            await flow.promote(targets, reg, repo, None, lambda ts: [], run=r2)
        assert await reg.digest(repo.path, t.tag) is None
        await r2.put_leg(_leg(t, "linux/arm64", reason="smoke checks failed: version"))
        (pub,) = await flow.merge(targets, reg, repo, r2)
        assert "linux/arm64: failed in run r2: smoke checks failed: version" in pub.skipped
        rows = await run_rows(targets, reg, repo, r2)
        assert [(r.platform, r.result) for r in rows] == [("linux/amd64", "passed"), ("linux/arm64", "failed")]
        assert "held back" in rows[0].why and "<failure " in junit(rows, "r2") and "| FAILED |" in markdown(rows, "r2")
        # the re-run leg passes: merge indexes release 2's digests only, promote takes that index
        arm64 = await _image(reg, f"{t.tag}-linux-arm64", "linux/arm64", "r2")
        await r2.put_leg(_leg(t, "linux/arm64", arm64))
        (pub,) = await flow.merge(targets, reg, repo, r2)
        assert pub.platforms == {"linux/amd64": amd64, "linux/arm64": arm64}
        await reg.put_manifest(repo.path, f"{t.tag}-dev", (await reg.manifest(repo.path, r1_index)).body,
                               "application/vnd.oci.image.index.v1+json")  # someone moved -dev back meanwhile
        (done,) = await flow.promote(targets, reg, repo, None, lambda ts: [], run=r2)
        assert done.digest == pub.digest == await reg.digest(repo.path, t.tag)  # the run's index, not the tag's
        index = json.loads((await reg.manifest(repo.path, t.tag)).body)
        assert {m["digest"] for m in index["manifests"]} == {amd64, arm64} and not set(first.values()) & {amd64, arm64}
        assert all(r.promoted for r in await run_rows(targets, reg, repo, r2))


async def test_a_record_that_lies_is_refused(registry, targets):
    (t,) = targets
    repo = flow.Repository(registry.registry, REPO.namespace, REPO.name)
    async with Registry(registry.registry, registry.username, registry.password) as reg:
        await reg.login()
        records = RunRecords(reg, repo.runs_path, "r9")
        await records._put(records._tag(t.tag, "linux/amd64"), "leg", {"tag": t.tag, "platform": "linux/amd64",
                                                                       "passed": "yes"})
        with pytest.raises(Failed, match="malformed"):
            await records.leg(t.tag, "linux/amd64")
        other = RunRecords(reg, repo.runs_path, "r8")
        await other._put(records._tag(t.tag, "linux/arm64"), "leg", {"tag": t.tag, "platform": "linux/arm64",
                                                                     "passed": True})
        with pytest.raises(Failed, match="does not record run r9"):
            await records.leg(t.tag, "linux/arm64")


def test_merge_needs_the_run_it_merges():
    r = subprocess.run([sys.executable, "-m", "runner", "merge", "--matrix", str(FIXTURE), "--registry", "127.0.0.1:9"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--run" in r.stderr
    r = subprocess.run([sys.executable, "-m", "runner", "publish", "--matrix", str(FIXTURE), "--registry", "127.0.0.1:9",
                        "--single-arch"], capture_output=True, text=True, env={**os.environ, "REGISTRY_PASSWORD": "x",
                                                                               "REGISTRY_USERNAME": "u"})
    assert r.returncode == 2 and "give --run ID" in r.stderr, r.stderr


def test_run_ids_are_checked():
    from runner.model.errors import UserError
    from runner.release.run_records import check_run

    for bad in ("", "a b", "x" * 41, "../r", "-r"):
        with pytest.raises(UserError, match="malformed run ID"):
            check_run(bad)
    assert check_run("1234567890-2") == "1234567890-2"

