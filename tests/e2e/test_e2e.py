"""The release flow on a real BuildKit and registry: build, smoke, publish, promote, prune, discard.

The tests run in file order on one daemon and registry: each step starts from what the previous left.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from runner.compose.plan import make_plan
from runner.compose.project import load_project
from runner.compose.stages import File, Run

pytestmark = pytest.mark.e2e

TAGS = ("demo1.0-echo0.1.0", "demo1.0-echo0.2.0")  # good on both platforms
BROKEN = "demo1.0-echo0.3.0"  # its arm64 package reports the wrong version


def _distinct_run_steps(e) -> int:
    project = load_project(e.root / "project" / "matrix.yaml")
    plan = make_plan(project.targets, project.recipes)
    return sum(isinstance(s, (Run, File)) for stage in plan.stages for s in stage.steps)  # each renders one RUN


def _report(e, name: str) -> dict:
    return json.loads((e.root / name).read_text())


def _reg(e) -> list[str]:
    return ["--registry", e.registry, "--insecure", "--catalog", str(e.root / "catalog.json")]


def _tags(e) -> list[str]:
    out = e.skopeo("list-tags", "--tls-verify=false", f"docker://{e.registry}/e2e/runner", check=False)
    return json.loads(out.stdout).get("Tags") or [] if out.returncode == 0 else []


def _raw(e, tag: str) -> tuple[dict, str]:
    import hashlib

    out = e.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{e.registry}/e2e/runner:{tag}")
    return json.loads(out.stdout), "sha256:" + hashlib.sha256(out.stdout.encode()).hexdigest()


def test_cold_build_executes_each_distinct_step_once_and_smoke_tests_every_image(e2e):
    r = e2e.runner("build", "--report", str(e2e.root / "cold.json"))
    assert r.returncode == 1, r.stderr  # the broken target fails its smoke tests
    report = _report(e2e, "cold.json")
    assert report["steps"]["executed"] == _distinct_run_steps(e2e)
    assert report["steps"]["cached"] > 0  # shared runtime steps were reused by the other services
    by = {(i["tag"], i["platform"]): i for i in report["images"]}
    assert len(by) == 6
    for tag in TAGS + (BROKEN,):
        assert by[(tag, "linux/amd64")]["smoke"]["passed"], by[(tag, "linux/amd64")]
    assert by[(TAGS[0], "linux/arm64")]["smoke"]["passed"]
    broken = by[(BROKEN, "linux/arm64")]
    assert not broken["smoke"]["passed"] and broken["smoke"]["failed"] == ["version"]
    check = next(c for c in broken["smoke"]["checks"] if c["name"] == "version")
    assert "echo-serve 0.2.9" in check["excerpt"] and "does not match" in check["reason"]
    assert f"{BROKEN} on linux/arm64: smoke checks failed: version" in r.stderr
    names = {c["name"] for c in by[(TAGS[0], "linux/amd64")]["smoke"]["checks"]}
    assert {"entrypoint", "tini", "version", "consumer-flags", "patched", "environment", "no-package-manager-cache"} <= names


def _checks(report: dict) -> list[dict]:
    return [c for r in report["images"] for c in r["smoke"]["checks"]]


def test_warm_rebuild_executes_no_step_and_remembers_every_smoke_result(e2e):
    r = e2e.runner("build", "--report", str(e2e.root / "warm.json"))
    warm = _report(e2e, "warm.json")
    steps = warm["steps"]
    assert steps["executed"] == 0 and steps["cached"] == _report(e2e, "cold.json")["steps"]["executed"] + \
        _report(e2e, "cold.json")["steps"]["cached"], r.stderr
    # same image, same rendered checks: every result comes from memory, the broken one's failure too
    # (the entrypoint is read from the image's config, never from a container: nothing to remember)
    ran = [c for c in _checks(warm) if c["name"] != "entrypoint"]
    assert ran and all(c["cached"] for c in ran), [c["name"] for c in ran if not c["cached"]]
    assert [(i["tag"], i["platform"]) for i in warm["images"] if not i["smoke"]["passed"]] == [(BROKEN, "linux/arm64")]
    assert steps["images_unchanged"] == len(warm["images"])  # nothing even sent to BuildKit
    r = e2e.runner("build", "--no-smoke-cache", "--report", str(e2e.root / "forced.json"))
    forced = _report(e2e, "forced.json")
    assert not any(c["cached"] for c in _checks(forced)) and forced["failed"] == 1, r.stderr


def test_a_changed_build_input_goes_back_to_buildkit(e2e):
    """Another revision changes a build argument (the revision label): every image is built again
    (its steps cached, its label new); a removed image is built again too."""
    e2e.docker("rmi", f"runner-build/{TAGS[0]}:linux-amd64")
    r = e2e.runner("build", "--revision", "e2e-other", "--report", str(e2e.root / "revision.json"))
    report = _report(e2e, "revision.json")
    assert report["steps"]["images_unchanged"] == 0 and report["steps"]["executed"] == 0, r.stderr
    labels = json.loads(e2e.docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                                   f"runner-build/{TAGS[0]}:linux-amd64").stdout)
    assert labels["org.opencontainers.image.revision"] == "e2e-other"
    r = e2e.runner("build", "--report", str(e2e.root / "back.json"))  # the default revision again
    assert _report(e2e, "back.json")["steps"]["images_unchanged"] == 0, r.stderr


def test_images_carry_labels_and_no_cache_bytes(e2e):
    labels = json.loads(e2e.docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                                   f"runner-build/{TAGS[0]}:linux-arm64").stdout)
    assert labels["org.opencontainers.image.version"] == TAGS[0]
    assert labels["io.gpustack.runner.service-version"] == "0.1.0" and labels["org.opencontainers.image.created"]
    out = e2e.docker("run", "--rm", "--network", "none", f"runner-build/{TAGS[0]}:linux-amd64", "sh", "-c",
                     "ls -A /var/cache/fixture | wc -l")
    assert out.stdout.strip() == "0"


class ArgvWatcher(threading.Thread):
    """Scans every process's argv while a command runs, for the registry password."""

    def __init__(self, secret: str) -> None:
        super().__init__(daemon=True)
        self.secret, self.seen, self.scans = secret.encode(), [], 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if self.secret in Path(f"/proc/{pid}/cmdline").read_bytes():
                        self.seen.append(pid)
                except OSError:
                    pass  # the process ended between listing and reading
            self.scans += 1


def test_publish_pushes_single_arch_tags_and_dev_indexes_of_passing_tags_only(e2e):
    watcher = ArgvWatcher(e2e.password)
    watcher.start()
    try:
        r = e2e.runner("publish", "--registry", e2e.registry, "--report", str(e2e.root / "publish.json"))
    finally:
        watcher.done.set()
        watcher.join()
    assert r.returncode == 1  # the broken tag is reported
    assert watcher.scans > 0 and watcher.seen == []
    tags = set(_tags(e2e))
    for tag in TAGS:
        assert {f"{tag}-linux-amd64", f"{tag}-linux-arm64", f"{tag}-dev"} <= tags
        index, _ = _raw(e2e, f"{tag}-dev")
        platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"])
        assert platforms == ["linux/amd64", "linux/arm64"]
    assert not [t for t in tags if t.startswith(BROKEN)]  # amd64 passed, but the tag publishes nothing
    published = {p["tag"]: p for p in _report(e2e, "publish.json")["published"]}
    assert "linux/arm64: version" in published[BROKEN]["skipped"]
    assert published[TAGS[0]]["digest"] == _raw(e2e, f"{TAGS[0]}-dev")[1]
    # the index is made of exactly the tested single-arch manifests, by digest (nothing rebuilt)
    index, _ = _raw(e2e, f"{TAGS[0]}-dev")
    assert {m["digest"] for m in index["manifests"]} == {_raw(e2e, f"{TAGS[0]}-{p}")[1] for p in ("linux-amd64", "linux-arm64")}
    assert {m["digest"] for m in index["manifests"]} == set(published[TAGS[0]]["platforms"].values())
    # the password is in no log, report or image
    texts = [r.stdout, r.stderr, (e2e.root / "publish.json").read_text(), (e2e.root / "dockerd.log").read_text()]
    for tag in TAGS:
        texts.append(e2e.docker("history", "--no-trunc", f"runner-build/{tag}:linux-amd64").stdout)
        texts.append(e2e.docker("image", "inspect", f"runner-build/{tag}:linux-amd64").stdout)
    assert not [t for t in texts if e2e.password in t]


def test_promote_points_final_tags_at_the_tested_index_and_is_idempotent(e2e):
    r = e2e.runner("promote", *_reg(e2e))  # the broken tag has no -dev index: nothing is promoted
    assert r.returncode == 1 and "demo1.0-echo0.3.0-dev" in r.stderr and "nothing was promoted" in r.stderr
    assert not set(TAGS) & set(_tags(e2e)) and not (e2e.root / "catalog.json").exists()
    r = e2e.runner("promote", *_reg(e2e), "--skip-missing")
    assert r.returncode == 0, r.stderr
    first = {p["tag"]: p for p in json.loads(r.stdout)}
    assert "is not published" in first[BROKEN]["skipped"]
    for tag in TAGS:
        assert first[tag]["changed"] and _raw(e2e, tag)[1] == _raw(e2e, f"{tag}-dev")[1] == first[tag]["digest"]
    catalog = json.loads((e2e.root / "catalog.json").read_text())
    assert sorted({(c["docker_image"], c["platform"]) for c in catalog}) == sorted(
        (f"e2e/runner:{t}", p) for t in TAGS for p in ("linux/amd64", "linux/arm64"))
    # publishing and promoting again changes nothing
    before = {t: _raw(e2e, t)[1] for t in _tags(e2e)}
    e2e.runner("publish", "--registry", e2e.registry)
    again = {p["tag"]: p for p in json.loads(e2e.runner("promote", *_reg(e2e), "--skip-missing").stdout)}
    assert not any(again[t]["changed"] for t in TAGS)
    assert {t: _raw(e2e, t)[1] for t in _tags(e2e)} == before


def test_prune_removes_strays_and_intermediates_but_keeps_final_tags(e2e):
    stray = f"{e2e.registry}/e2e/runner:demo1.0-echo0.0.9"  # a version the matrix no longer has
    e2e.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--all",
               f"docker://{e2e.registry}/e2e/runner:{TAGS[0]}", f"docker://{stray}")
    e2e.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--all",
               f"docker://{e2e.registry}/e2e/runner:{TAGS[0]}", f"docker://{e2e.registry}/e2e/runner:not-a-runner-tag")
    final_digests = {t: _raw(e2e, t)[1] for t in TAGS}
    r = e2e.runner("prune", *_reg(e2e))
    assert r.returncode == 0 and json.loads(r.stdout)["deleted"] == ["demo1.0-echo0.0.9"]
    r = e2e.runner("prune", *_reg(e2e), "--intermediates")
    assert r.returncode == 0, r.stderr
    assert sorted(_tags(e2e)) == sorted([*TAGS, "not-a-runner-tag"])
    assert {t: _raw(e2e, t)[1] for t in TAGS} == final_digests  # final tags survive their -dev twins


def test_discard_removes_a_targets_tags_and_its_catalog_records(e2e):
    r = e2e.runner("discard", *_reg(e2e), "--service-version", "0.1.0")
    assert r.returncode == 0, r.stderr
    assert TAGS[0] not in _tags(e2e) and TAGS[1] in _tags(e2e)
    catalog = json.loads((e2e.root / "catalog.json").read_text())
    assert {c["docker_image"] for c in catalog} == {f"e2e/runner:{TAGS[1]}"}


def test_wrong_password_is_a_clear_error(e2e):
    r = e2e.runner("promote", *_reg(e2e), REGISTRY_PASSWORD="wrong")
    assert r.returncode == 2 and "refused the credentials" in r.stderr and "Traceback" not in r.stderr


def test_fan_out_per_platform_jobs_then_merge(e2e):
    """CI runs one job per target and platform pushing single-arch images and recording them for the
    run; merge makes the indexes of the tags whose platforms all passed in that run."""
    for platform in ("linux/amd64", "linux/arm64"):
        r = e2e.runner("publish", "--registry", e2e.registry, "--single-arch", "--platform", platform,
                       "--service-version", "0.1.0", "--run", "fan")
        assert r.returncode == 0, r.stderr
    broken = e2e.runner("publish", "--registry", e2e.registry, "--single-arch", "--platform", "linux/arm64",
                        "--service-version", "0.3.0", "--run", "fan")
    assert broken.returncode == 1
    e2e.runner("publish", "--registry", e2e.registry, "--single-arch", "--platform", "linux/amd64",
               "--service-version", "0.3.0", "--run", "fan")
    tags = set(_tags(e2e))
    assert {f"{TAGS[0]}-linux-amd64", f"{TAGS[0]}-linux-arm64", f"{BROKEN}-linux-amd64"} <= tags
    assert f"{TAGS[0]}-dev" not in tags and f"{BROKEN}-linux-arm64" not in tags
    r = e2e.runner("merge", *_reg(e2e), "--service-version", "0.1.0", "--run", "fan")
    assert r.returncode == 0, r.stderr
    index, digest = _raw(e2e, f"{TAGS[0]}-dev")
    assert json.loads(r.stdout)[0]["digest"] == digest
    assert {m["digest"] for m in index["manifests"]} == {_raw(e2e, f"{TAGS[0]}-{p}")[1] for p in ("linux-amd64", "linux-arm64")}
    r = e2e.runner("merge", *_reg(e2e), "--service-version", "0.3.0", "--run", "fan")
    assert r.returncode == 1 and "linux/arm64: failed in run fan: version" in r.stdout
    assert f"{BROKEN}-dev" not in set(_tags(e2e))
    r = e2e.runner("merge", *_reg(e2e), "--service-version", "0.1.0", "--run", "other")  # nothing of that run
    assert r.returncode == 1 and "linux/amd64: not tested in run other" in r.stdout


def test_a_base_image_that_cannot_be_pulled_fails_its_target_and_the_others_build(e2e):
    matrix = (e2e.root / "project" / "matrix.yaml").read_text().replace(
        "          echo: [0.1.0, 0.2.0, 0.3.0]",
        "          echo: [0.1.0]\n      - version: 2.0.0\n        base_image: runner-fixture/missing:{version}\n"
        "        services:\n          echo: [0.2.0]")
    (e2e.root / "project" / "unpullable.yaml").write_text(matrix)
    r = e2e.runner("build", "--matrix", "unpullable.yaml", "--report", str(e2e.root / "unpullable.json"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    by = {(i["tag"], i["platform"]): i for i in _report(e2e, "unpullable.json")["images"]}
    assert len(by) == 4
    for platform in ("linux/amd64", "linux/arm64"):
        broken = by[("demo2.0-echo0.2.0", platform)]
        assert "runner-fixture/missing" in broken["error"] and not broken["smoke"]["passed"]
        base = f"runner-fixture/missing:2.0.0-{platform.split('/')[1]}"
        assert broken["cause"] == "base image" and broken["base_image"] == base
        assert by[(TAGS[0], platform)]["smoke"]["passed"]
        # said once per base image, naming the registry tried, and not blamed on the recipe
        (line,) = [x for x in r.stderr.splitlines() if base in x]
        assert line.startswith(f"runner: base image {base} could not be pulled from docker.io: ")
        assert line.endswith(f"(1 image not built: demo2.0-echo0.2.0 on {platform})")
    assert "pack/" not in r.stderr and "docker.io/runner-fixture: MIRROR/runner-fixture" in r.stderr
    # the mirror setting the advice names redirects the base: here to images only the daemon holds
    for arch in ("amd64", "arm64"):
        e2e.docker("tag", f"runner-fixture/demo-base:1.0.0-{arch}", f"mirror.local/fixture/missing:2.0.0-{arch}")
    r = e2e.runner("build", "--matrix", "unpullable.yaml", "--service-version", "0.2.0", "--report",
                   str(e2e.root / "mirrored.json"), RUNNER_MIRRORS="docker.io/runner-fixture/missing=mirror.local/fixture/missing")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {(i["tag"], i["platform"]) for i in _report(e2e, "mirrored.json")["images"] if i["smoke"]["passed"]} == {
        ("demo2.0-echo0.2.0", "linux/amd64"), ("demo2.0-echo0.2.0", "linux/arm64")}
