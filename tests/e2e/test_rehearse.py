"""`runner rehearse` end to end on the local BuildKit: a fixture backend whose vendor base cannot be
pulled (a Debian stand-in made with debootstrap takes its place), declared sources the rehearsal
mirror serves, cannot serve, or serves as 404 for a git clone, and a step that fails on purpose; and
the same on runner's embedded engine, a private dockerd it starts itself when no daemon answers."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tarfile
from pathlib import Path

import pytest

from runner.engines.private_daemon import PrivateDaemon
from runner.rehearse.rewrite import NOT_FETCHABLE
from tests.conftest import ROOT
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
    done = e2e.runner("rehearse", "--all", "--report", str(report), RUNNER_MATRIX=str(project / "matrix.yaml"),
                      RUNNER_CACHE_DIR=str(cache))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]  # echo 0.3.0's step fails on purpose
    result = json.loads(report.read_text())
    images = {i["tag"]: i for i in result["images"]}
    assert set(images) == {"vendor1.0-echo0.1.0", "vendor1.0-echo0.2.0", "vendor1.0-echo0.3.0", "vendor1.0-echo0.4.0"}

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

    # the vendor's compiler, declared in the stand-in spec as one it cannot carry: the step ran up to it
    compiled = images["vendor1.0-echo0.4.0"]
    assert compiled["verdict"] == "not runnable here", compiled
    (kernels,) = [s for s in compiled["steps"] if s["title"] == "the echo kernels built with the vendor's compiler"]
    assert kernels["status"] == "not runnable here" and kernels["needs"] == ["vendorcc"], kernels
    assert "vendorcc: command not found" in kernels["output"]
    assert compiled["steps"][-1]["status"] == "not run" and not compiled["smoke"]

    c = result["coverage"]
    assert (c["ran"], c["not fetchable here"], c["not runnable here"], c["failed"], c["total"]) == (3, 2, 1, 1, 7)
    assert c["distinct_scripts_in_plan"] == 7
    assert "substituted: vendor.invalid/base:1.0.0" in done.stderr and NOT_FETCHABLE.split(":")[0] not in done.stdout
    print(f"[rehearse] coverage: {c}")
    # nothing the rehearsal built is left on the daemon
    left = e2e.docker("images", "--format", "{{.Repository}}").stdout.split()
    assert not [r for r in left if r.startswith("runner-rehearsal/")], left


def test_with_no_daemon_runner_starts_its_own_builds_on_it_and_stops_it(e2e, tmp_path):
    project = e2e.root / "embedded-project"
    shutil.copytree(FIXTURE, project)
    cache = Path(tempfile.mkdtemp(prefix="rk-engine-", dir="/tmp"))  # short: the daemon's sockets live under it
    # the stand-in's Debian root file system the other rehearsal test keeps, linked rather than made again
    made = infra.TEST_CACHE / "rehearse-cache" / "rehearsal"
    if made.is_dir():
        shutil.copytree(made, cache / "rehearsal", copy_function=os.link)
    served = Path(os.environ["RUNNER_SOURCES_DIR"]) / "files" / "downloads.vendor.invalid"
    served.mkdir(parents=True, exist_ok=True)
    (served / "vendortool-1.0.tar.gz").write_bytes(_tool())
    env = {k: v for k, v in e2e.env().items() if k != "DOCKER_HOST"}
    env.update(RUNNER_MATRIX=str(project / "matrix.yaml"), RUNNER_CACHE_DIR=str(cache))
    engine = PrivateDaemon(cache / "engine")

    def runner(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "runner", *args], env=env, capture_output=True, text=True,
                              cwd=project, timeout=900)
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return done

    report = tmp_path / "report.json"
    try:
        start = time.monotonic()
        done = runner("rehearse", "--service-version", "0.1.0", "--report", str(report), "--keep-engine")
        print(f"[rehearse] on the embedded engine: {time.monotonic() - start:.0f} s")
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"started a private dockerd (unix://{cache}/engine/d.sock" in done.stderr, done.stderr[-2000:]
        (image,) = json.loads(report.read_text())["images"]
        assert image["tag"] == "vendor1.0-echo0.1.0" and image["verdict"] == "passed", image
        # kept: still running, and the next run uses it (and, without --keep-engine, stops it)
        assert "kept running" in done.stderr and engine.pid()
        assert "the embedded engine is running" in runner("cache", "--info").stdout
        done = runner("build", "--service-version", "0.1.0")  # its vendor base cannot be pulled: it fails
        assert "the private dockerd kept from an earlier run" in done.stderr, done.stderr[-2000:]
        assert "private dockerd stopped" in done.stderr
        # stopped: no dockerd on that folder, its socket gone, nothing of it left mounted
        daemons = [p for p in Path("/proc").glob("[0-9]*") if Path(_cmdline(p).split(" ")[0]).name == "dockerd"
                   and str(cache) in _cmdline(p)]
        assert not daemons, [_cmdline(p) for p in daemons]
        assert not engine.pid() and not (cache / "engine" / "d.sock").exists()
        with open("/proc/mounts") as f:
            assert not [m for m in f.read().split() if m.startswith(str(cache))]
        assert (cache / "engine" / "data").is_dir()  # its data stays in the cache for the next run
        cleared = runner("cache", "--clear")
        assert cleared.returncode == 0 and "engine" in cleared.stdout, cleared.stdout + cleared.stderr
        assert not (cache / "engine").exists() and not (cache / "rehearsal").exists()
    finally:
        engine.stop(remove=True)
        shutil.rmtree(cache, ignore_errors=True)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_the_default_real_target_rehearses_its_own_scripts_to_passing_smoke_tests(e2e, tmp_path):
    """The project's own matrix and recipe (cuda12.8-voxbox0.0.21: runtime, torch, VoxBox): every
    rendered script runs on the daemon as the release would, and the image passes its smoke spec."""
    from runner.cli.rehearse import DEFAULT_PLATFORM, DEFAULT_TARGET

    report = tmp_path / "report.json"
    start = time.monotonic()
    # the other rehearsal's cache: the stand-in's Debian root file system is made once for both
    done = e2e.runner("rehearse", "--report", str(report), RUNNER_MATRIX=str(ROOT / "matrix.yaml"),
                      RUNNER_CACHE_DIR=str(infra.TEST_CACHE / "rehearse-cache"))
    seconds = time.monotonic() - start
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    result = json.loads(report.read_text())
    (image,) = result["images"]
    assert (image["tag"], image["platform"]) == (DEFAULT_TARGET, DEFAULT_PLATFORM)
    failed = [s for s in image["steps"] if s["status"] not in ("ran", "substituted")]
    assert not failed, json.dumps(failed, indent=1)[-3000:]
    broken = [f"{c['name']}: {c['excerpt'][-600:]}" for c in image["smoke"] if not c["passed"]]
    assert image["verdict"] == "passed" and done.returncode == 0, "\n".join(broken) or done.stderr[-3000:]
    assert {"version", "pip-check", "consumer-deployments"} <= {c["name"] for c in image["smoke"]}
    # what it could not run as written is said, with the thing that stood in for it
    kinds = {s["kind"] for s in image["substitutions"]}
    assert {"stand-in base", "python"} <= kinds, kinds
    assert "substituted: " in done.stderr
    c = result["coverage"]
    assert c["ran"] >= 4 and c["failed"] == c["not fetchable here"] == 0, c
    print(f"[rehearse] {DEFAULT_TARGET} on {DEFAULT_PLATFORM} with its real scripts: {image['verdict']} in "
          f"{seconds:.0f} s; distinct scripts: {c['ran']} ran, {c['substituted']} substituted of {c['total']}; "
          f"{sum(x['passed'] for x in image['smoke'])} of {len(image['smoke'])} smoke checks passed")
    left = e2e.docker("images", "--format", "{{.Repository}}").stdout.split()
    assert not [r for r in left if r.startswith("runner-rehearsal/")], left
