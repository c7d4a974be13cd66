"""`runner rehearse` end to end on the local BuildKit: a fixture backend whose vendor base cannot be
pulled (a Debian stand-in made with debootstrap takes its place), declared sources the rehearsal
mirror serves, cannot serve, or serves as 404 for a git clone, and a step that fails on purpose."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from runner.rehearse.rewrite import NOT_FETCHABLE
from tests.e2e import infra

pytestmark = pytest.mark.e2e
FIXTURE = infra.FIXTURE.parent / "rehearse"


def _tool() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = b"#!/bin/sh\necho 'vendortool 1.0'\n"
        info = tarfile.TarInfo("vendortool")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_rehearse_reports_every_step_and_smoke_tests_the_images(e2e, tmp_path):
    project = e2e.root / "rehearse-project"
    shutil.copytree(FIXTURE, project)
    # the stand-in's Debian root file system is kept between runs, as downloads are
    cache = infra.TEST_CACHE / "rehearse-cache"
    served = Path(os.environ.get("RUNNER_SOURCES_DIR") or cache / "sources") / "files" / "downloads.vendor.invalid"
    served.mkdir(parents=True, exist_ok=True)
    (served / "vendortool-1.0.tar.gz").write_bytes(_tool())
    report = tmp_path / "report.json"
    done = e2e.runner("rehearse", "--report", str(report), RUNNER_MATRIX=str(project / "matrix.yaml"),
                      RUNNER_CACHE_DIR=str(cache))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]  # echo 0.3.0's step fails on purpose
    result = json.loads(report.read_text())
    images = {i["tag"]: i for i in result["images"]}
    assert set(images) == {"vendor1.0-echo0.1.0", "vendor1.0-echo0.2.0", "vendor1.0-echo0.3.0"}

    whole = images["vendor1.0-echo0.1.0"]
    assert whole["verdict"] == "passed", whole
    assert [s["status"] for s in whole["steps"]] == ["ran"] * len(whole["steps"])
    assert all(c["passed"] for c in whole["smoke"]) and {c["name"] for c in whole["smoke"]} >= {"version", "vendor-tool"}
    (standin,) = [s for s in whole["substitutions"] if s["what"] == "vendor.invalid/base:1.0.0"]
    assert standin["kind"] == "stand-in base" and "the vendor's driver libraries" in standin["why"]

    partial = images["vendor1.0-echo0.2.0"]
    assert partial["verdict"] == "not fetchable here"
    by_title = {s["title"]: s for s in partial["steps"]}
    assert by_title["the vendor extras 2.0"]["status"] == "not fetchable here"
    assert by_title["the vendor extras 2.0"]["urls"] == ["https://downloads.vendor.invalid/extras-2.0.tar.gz"]
    clone = by_title["the echo source at its tag"]
    assert clone["status"] == "not fetchable here"
    assert clone["urls"] == ["https://git.vendor.invalid/echo.git"], clone["urls"]
    assert by_title["the echo service package"]["status"] == "ran"  # the steps after it still ran
    assert all(c["passed"] for c in partial["smoke"])

    broken = images["vendor1.0-echo0.3.0"]
    assert broken["verdict"] == "failed step"
    statuses = [(s["title"], s["status"]) for s in broken["steps"]]
    assert ("refuse echo 0.3.0", "failed") in statuses and statuses[-1] == ("the echo service package", "not run")
    failed = next(s for s in broken["steps"] if s["status"] == "failed")
    assert "echo 0.3.0 is not supported" in failed["output"]

    c = result["coverage"]
    assert (c["ran"], c["not fetchable here"], c["failed"], c["total"]) == (3, 2, 1, 6)
    assert c["distinct_scripts_in_plan"] == 6
    assert "substituted: vendor.invalid/base:1.0.0" in done.stderr and NOT_FETCHABLE.split(":")[0] not in done.stdout
    print(f"[rehearse] coverage: {c}")
    # nothing the rehearsal built is left on the daemon
    left = e2e.docker("images", "--format", "{{.Repository}}").stdout.split()
    assert not [r for r in left if r.startswith("runner-rehearsal/")], left
