"""Reproducible digests: the fixture built cold on two fresh Docker daemons that share nothing but the
registry gives the same single-arch and index digests (timestamps clamped to the recipe commit's
time, file order fixed, caches in cache mounts, never in layers)."""

from __future__ import annotations

import json
import tarfile
import time

import pytest

pytestmark = pytest.mark.e2e

TAG = "demo1.0-echo0.1.0"


def _publish(env, namespace: str) -> dict:
    start = time.monotonic()
    r = env.runner("publish", "--registry", env.registry, "--namespace", namespace, "--service-version", "0.1.0",
                   "--reproducible", "--report", str(env.root / "repro.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"[reproducible] cold build, smoke and publish on a fresh daemon: {time.monotonic() - start:.1f} s", flush=True)
    report = json.loads((env.root / "repro.json").read_text())
    assert report["steps"]["cached"] == 0  # cold: nothing came from a cache
    (published,) = report["published"]
    return published


def test_two_cold_builds_on_two_daemons_give_equal_digests(two_daemons, tmp_path):
    first, second = two_daemons
    a, b = _publish(first, "repro-a"), _publish(second, "repro-b")
    assert a["platforms"] == b["platforms"] and len(a["platforms"]) == 2
    assert a["digest"] == b["digest"]
    # the image's own files carry the recipe commit's time at the latest, in sorted order
    commit = _commit_time(first)
    first.docker("save", "-o", str(tmp_path / "image.tar"), f"runner-build/{TAG}:linux-amd64")
    with tarfile.open(tmp_path / "image.tar") as saved:
        entry = json.loads(saved.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        config = json.loads(saved.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        with tarfile.open(fileobj=saved.extractfile(entry["Layers"][-1])) as layer:
            members = layer.getmembers()
    assert config["created"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit))
    assert members and max(m.mtime for m in members) <= commit
    names = [m.name for m in members]
    assert names == sorted(names)


def _commit_time(env) -> int:
    import subprocess

    out = subprocess.run(["git", "-C", str(env.root / "project"), "log", "-1", "--format=%ct"], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())
