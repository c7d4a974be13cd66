"""Releases across two CI runners that share nothing but one registry: the DAG driver
(runner.release.dag_driver) runs every job of `runner plan --ci` as `runner job` on whichever of two
Docker daemons is free, each job starting when the jobs it starts from passed, stages handed on
through the build-cache repository and each target's result recorded for its run.

Two consecutive releases of the fixture matrix, the second with one failing leg: the second builds
no stage again, every index it promotes holds only its own images (never the first release's), the
failed leg holds back exactly its tag until it is re-run alone. Then: a job whose input is gone stops
instead of building it; a selective release pushes only the selected tags; a dry run writes nothing.
The tests run in file order on one pair of daemons."""

from __future__ import annotations

import json
import sys

import anyio
import pytest

from runner.compose.jobs import ci_jobs
from runner.compose.lookup import base_stages, cache_key
from runner.compose.plan import make_plan
from runner.compose.project import load_project
from runner.compose.stages import File, Run
from runner.model.targets import Selection
from runner.release.dag_driver import Result, drive
from tests.e2e import infra

pytestmark = pytest.mark.e2e

NS = "runners"  # a namespace of its own: the session's other tests use e2e/
BROKEN = "demo1.0-echo0.3.0"  # its arm64 package reports the wrong version: fails its smoke test every time
FLAKY = ("demo1.0-echo0.1.0", "linux/arm64")  # the leg whose runner fails in the second release
LOST_DISK = "#!/bin/sh\n[ \"$1\" = build ] && { echo 'no space left on device (this runner)' >&2; exit 1; }\nexec {docker} \"$@\"\n"


def _steps(stages) -> int:
    return sum(isinstance(s, (Run, File)) for stage in stages for s in stage.steps)  # each renders one RUN


@pytest.fixture(scope="module")
def runners(e2e, two_daemons):
    """Two fresh daemons (the session's own has built the fixture before: its cache is warm)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RUNNER_FIXTURE_INDEX", e2e.index)  # the recipe's index is part of its steps, so of the plan here
        for d in two_daemons:  # the fixture with relay images on the release's echo 0.2.0
            matrix = (d.root / "project" / "matrix.yaml").read_text()
            (d.root / "project" / "relay.yaml").write_text(matrix.replace(
                "echo: [0.1.0, 0.2.0, 0.3.0]", "echo: [0.1.0, 0.2.0, 0.3.0]\n          relay: [0.1.0, 0.2.0]"))
        yield two_daemons


class Daemons:
    """The driver's backend here: `runner job` on whichever daemon is free (a CI runner each)."""

    def __init__(self, daemons, run: str, revision: str, matrix: str = "matrix.yaml", selection: str = "",
                 failing: set[str] = frozenset(), extra: tuple[str, ...] = ()) -> None:
        self.daemons, self.run_id, self.revision, self.matrix = list(daemons), run, revision, matrix
        self.selection, self.failing, self.extra = selection, failing, extra
        self.reports: dict[str, dict] = {}
        self.where: dict[str, str] = {}

    async def run(self, job) -> Result:
        d = self.daemons.pop(0)
        try:
            out = await job_on(d, job.key, self.run_id, self.revision, self.matrix, self.selection,
                               broken_disk=job.key in self.failing, extra=self.extra)
        finally:
            self.daemons.append(d)
        self.reports[job.key], self.where[job.key] = out, str(d.root)
        return Result(out["returncode"] == 0, out.get("stopped") or json.dumps(out["images"])[:300])


async def job_on(d, key: str, run: str, revision: str, matrix: str = "matrix.yaml", selection: str = "",
                 broken_disk: bool = False, extra: tuple[str, ...] = (), **env: str) -> dict:
    """`runner job KEY` on daemon `d`, as a CI runner runs it (arm64 under emulation: one machine here)."""
    argv = [sys.executable, "-m", "runner", "job", key, "--matrix", matrix, "--selection", selection, "--build-cache",
            f"{d.registry}/{NS}/runner-build-cache", "--registry", d.registry, "--namespace", NS, "--run", run,
            "--revision", revision, "--no-smoke-cache", "--emulate", *extra]
    environment = d.env(**{"REGISTRY_PASSWORD": d.password, "REGISTRY_USERNAME": d.username, **env})
    if broken_disk:
        wrapper = d.root / "docker-lost-disk"
        wrapper.write_text(LOST_DISK.replace("{docker}", infra.DOCKER))
        wrapper.chmod(0o755)
        environment["RUNNER_DOCKER"] = str(wrapper)
    done = await anyio.run_process(argv, env=environment, cwd=d.root / "project", check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert "Traceback" not in stderr, stderr[-2000:]
    assert stdout.strip(), f"runner job {key} printed no report (exit {done.returncode}): {stderr[-2000:]}"
    return {**json.loads(stdout), "returncode": done.returncode, "stderr": stderr}


def _jobs(d, matrix: str = "matrix.yaml", selection: Selection = Selection()):
    project = load_project(d.root / "project" / matrix)
    plan = make_plan(selection.apply(project.targets), project.recipes)
    return project, plan, ci_jobs(plan)


def _release(runners, run: str, revision: str, **kw) -> tuple[dict, Daemons]:
    first, _ = runners
    _, _, jobs = _jobs(first, kw.get("matrix", "matrix.yaml"), Selection.from_json(kw.get("selection", "")))
    backend = Daemons(runners, run, revision, **kw)
    driven = anyio.run(drive, jobs, backend, 2)
    assert driven.finished
    return {k[:16]: r for k, r in driven.results.items()}, backend


def _cli(d, *args: str) -> tuple[int, object, str]:
    r = d.runner(*args, "--registry", d.registry, "--namespace", NS, REGISTRY_USERNAME=d.username)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    return r.returncode, json.loads(r.stdout) if r.stdout.strip().startswith(("[", "{")) else r.stdout, r.stderr


def _raw(d, tag: str, repo: str = f"{NS}/runner") -> tuple[dict, str]:
    import hashlib

    out = d.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{d.registry}/{repo}:{tag}", check=False)
    if out.returncode:
        return {}, ""
    return json.loads(out.stdout), "sha256:" + hashlib.sha256(out.stdout.encode()).hexdigest()


def _members(d, tag: str) -> set[str]:
    return {m["digest"] for m in _raw(d, tag)[0].get("manifests", [])}


def _tags(d, repo: str) -> dict[str, str]:
    out = d.skopeo("list-tags", "--tls-verify=false", f"docker://{d.registry}/{repo}", check=False)
    tags = (json.loads(out.stdout).get("Tags") or []) if out.returncode == 0 else []
    return {t: _raw(d, t, repo)[1] for t in tags}


def _digests(backend: Daemons) -> dict[tuple[str, str], str]:
    return {(i["tag"], i["platform"]): i["digest"] for r in backend.reports.values() for i in r["images"]
            if i["passed"] and i["digest"]}


STATE: dict = {}


def test_first_release_builds_each_distinct_step_once_across_two_runners(runners):
    first, second = runners
    project, plan, jobs = _jobs(first)
    listed = json.loads(first.runner("plan", "--ci", "--format", "json").stdout)
    assert [j["key"] for j in listed["jobs"]] == [j.as_dict()["key"] for j in jobs.jobs]  # the CLI's plan is this plan
    results, backend = _release(runners, "r1", "rev1")
    reports = backend.reports.values()
    executed = sum(r["steps"]["executed"] for r in reports)
    distinct = _steps(s for s in plan.stages if s.kind != "base")
    print(f"[runners] release 1: {len(results)} jobs on 2 daemons, {executed} steps executed for {distinct} "
          f"distinct steps", flush=True)
    assert executed == distinct, json.dumps([(r["job"]["stage"], r["job"]["platform"], r["steps"], r["stopped"],
                                              r["stderr"][-300:]) for r in reports], indent=1)
    assert len({backend.where[k] for k in backend.reports}) == 2  # both runners took jobs
    # the cross-base stage (a tool built on the builder image, mounted into every echo image) is built
    # once per platform, and every echo job finds it under the same key
    built = [s for r in reports for s in r["published_to_cache"] if s.startswith("greeting-build")]
    assert sorted(built) == ["greeting-build greeting-build linux/amd64", "greeting-build greeting-build linux/arm64"]
    leaves = [r for r in reports if r["job"]["tag"]]
    assert all(any(s.startswith("greeting-build") for s in r["from_cache"]) for r in leaves)
    # the broken target fails its own job and nothing else
    failed = [r for r in reports if r["returncode"]]
    assert sorted((r["job"]["tag"], r["job"]["platform"]) for r in failed) == [(BROKEN, "linux/arm64")], \
        json.dumps([(r["job"]["tag"], r["job"]["platform"], r["stopped"], r["stderr"][-1500:]) for r in failed], indent=1)

    code, merged, err = _cli(first, "merge", "--run", "r1", "--skip-missing")
    assert code == 0, err
    by = {p["tag"]: p for p in merged}
    assert "linux/arm64: failed in run r1" in by[BROKEN]["skipped"]
    code, promoted, err = _cli(first, "promote", "--run", "r1", "--skip-missing")
    assert code == 0, err
    r1 = _digests(backend)
    for tag in ("demo1.0-echo0.1.0", "demo1.0-echo0.2.0"):
        assert _members(first, tag) == {r1[(tag, p)] for p in ("linux/amd64", "linux/arm64")}
    STATE["r1"] = r1


def test_second_release_with_a_failing_leg_promotes_only_its_own_images(runners):
    first, second = runners
    _, _, jobs = _jobs(first)
    flaky = next(j for j in jobs.jobs if (j.tag, j.root.platform) == FLAKY)
    results, backend = _release(runners, "r2", "rev2", failing={flaky.key})
    reports = backend.reports.values()
    assert sum(r["steps"]["executed"] for r in reports) == 0  # every stage comes from the build cache
    failed = sorted((r["job"]["tag"], r["job"]["platform"]) for r in reports if r["returncode"])
    assert failed == sorted([(BROKEN, "linux/arm64"), FLAKY]), \
        json.dumps([(r["job"]["tag"], r["job"]["platform"], r["stopped"], r["stderr"][-1500:]) for r in reports
                    if r["returncode"]], indent=1)
    r1, r2 = STATE["r1"], _digests(backend)
    assert r2 and not set(r1.values()) & set(r2.values())  # this release's images: its own labels, its own digests
    old_index = _raw(first, f"{FLAKY[0]}-dev")[1]
    assert _tags(first, f"{NS}/runner")[f"{FLAKY[0]}-linux-arm64"] == r1[FLAKY]  # release 1's image is still there

    code, merged, err = _cli(first, "merge", "--run", "r2", "--skip-missing")
    assert code == 0, err
    by = {p["tag"]: p for p in merged}
    held = by[FLAKY[0]]["skipped"]
    assert "linux/arm64: failed in run r2" in held and "no space left on device" in held, held
    assert _raw(first, f"{FLAKY[0]}-dev")[1] == old_index  # not rewritten from r2's amd64 and r1's arm64
    code, promoted, err = _cli(first, "promote", "--run", "r2", "--skip-missing")
    assert code == 0, err
    done = {p["tag"]: p for p in promoted}
    assert "of run r2 is not published" in done[FLAKY[0]]["skipped"]
    assert _members(first, "demo1.0-echo0.2.0") == {r2[("demo1.0-echo0.2.0", p)] for p in ("linux/amd64", "linux/arm64")}
    assert _members(first, FLAKY[0]) == {r1[(FLAKY[0], p)] for p in ("linux/amd64", "linux/arm64")}  # r2 left it alone
    code, report, err = _cli(first, "release-report", "--run", "r2", "--format", "json")
    rows = {(r["tag"], r["platform"]): r for r in report}
    assert rows[FLAKY]["result"] == "failed" and "no space left" in rows[FLAKY]["why"]
    assert rows[("demo1.0-echo0.2.0", "linux/arm64")]["promoted"] and not rows[(FLAKY[0], "linux/amd64")]["promoted"]
    assert "held back" in rows[(FLAKY[0], "linux/amd64")]["why"]

    # the failed leg re-run alone, on a healthy runner, completes the release
    again = anyio.run(job_on, second, flaky.key, "r2", "rev2")
    assert again["returncode"] == 0 and again["steps"]["executed"] == 0, again["stderr"][-2000:]
    assert _cli(first, "merge", "--run", "r2", "--service-version", "0.1.0")[0] == 0
    assert _cli(first, "promote", "--run", "r2", "--service-version", "0.1.0")[0] == 0
    final = _members(first, FLAKY[0])
    assert final == {r2[(FLAKY[0], "linux/amd64")], again["images"][0]["digest"]}
    assert not final & set(r1.values())  # never an image of the first release under a tag the second promoted
    code, text, _ = _cli(first, "release-report", "--run", "r2")
    assert code == 0 and "| demo1.0-echo0.1.0 | linux/arm64 | passed |" in text, text
    code, xml, _ = _cli(first, "release-report", "--run", "r2", "--format", "junit")
    assert code == 0 and xml.count("<testcase ") == 6 and xml.count("<failure ") == 1  # the broken arm64 only
    print(f"[runners] release 2: {len(results)} jobs, failed {failed}, the flaky leg re-run alone", flush=True)


def test_a_job_whose_input_is_gone_stops_and_a_re_run_of_the_input_job_rebuilds_only_it(runners):
    first, second = runners
    project, plan, jobs = _jobs(first)
    runtime = next(j for j in jobs.jobs if j.root.kind == "runtime" and j.root.platform == "linux/amd64")
    leaf = next(j for j in jobs.jobs if j.tag == "demo1.0-echo0.2.0" and j.root.platform == "linux/amd64")
    digests = {b: first.docker("image", "inspect", "--format", "{{.Id}}", b.image).stdout.strip()
               for b in base_stages(leaf.root)}
    cache = f"{first.registry}/{NS}/runner-build-cache"
    for stage in (runtime.root, leaf.root):  # the runtime is lost, and the leaf with it (else it is simply found)
        first.skopeo("delete", "--tls-verify=false", f"docker://{cache}:{cache_key(stage, digests)}")
    stopped = anyio.run(job_on, second, leaf.key, "r3", "rev3")
    assert stopped["returncode"] == 1 and stopped["steps"]["executed"] == 0
    why = f"input runtime runtime linux/amd64 failed in job {runtime.key[:16]}"
    assert why in stopped["images"][0]["error"] and why in stopped["stderr"], stopped
    code, report, _ = _cli(first, "release-report", "--run", "r3", "--service-version", "0.2.0", "--format", "json")
    assert [r["result"] for r in report if r["platform"] == "linux/amd64"] == ["failed"]
    assert why in next(r["why"] for r in report if r["platform"] == "linux/amd64")
    fresh = infra.second_daemon(first)  # a new runner: no local build cache either
    try:
        rebuilt = anyio.run(job_on, fresh, runtime.key, "r3", "rev3")
    finally:
        infra.stop(fresh)
    assert rebuilt["returncode"] == 0 and rebuilt["steps"]["executed"] == _steps(runtime.builds), rebuilt
    assert rebuilt["published_to_cache"] == ["runtime runtime linux/amd64"]
    again = anyio.run(job_on, second, leaf.key, "r3", "rev3")
    assert again["returncode"] == 0, again["stderr"][-2000:]


def test_a_selective_release_pushes_only_the_selected_tags_and_a_dry_run_writes_nothing(runners):
    first, second = runners
    selection = Selection(service="relay")
    project, plan, jobs = _jobs(first, "relay.yaml", selection)
    _, _, everything = _jobs(first, "relay.yaml")
    echo_stage = {j.key for j in jobs.jobs if j.root.tag == "demo1.0-echo0.2.0"}
    # in the whole matrix the release's echo 0.2.0 image is a target; in the relay selection a stage
    assert len(echo_stage) == 2 and all(not j.tag for j in jobs.jobs if j.key in echo_stage)
    assert all(j.tag for j in everything.jobs if j.key in echo_stage)
    for p in ("linux-amd64", "linux-arm64"):
        first.skopeo("delete", "--tls-verify=false", f"docker://{first.registry}/{NS}/runner:demo1.0-echo0.2.0-{p}")
    before = _tags(first, f"{NS}/runner")
    results, backend = _release(runners, "r4", "rev4", matrix="relay.yaml", selection=selection.to_json())
    assert all(r.ok for r in results.values()), results
    after = _tags(first, f"{NS}/runner")
    added = sorted(set(after) - set(before))
    assert added == sorted(f"demo1.0-relay{v}-linux-{a}" for v in ("0.1.0", "0.2.0") for a in ("amd64", "arm64"))
    assert {t: d for t, d in after.items() if t in before} == before
    for key in echo_stage:  # built (or found) as a stage: never smoke-tested, pushed or recorded as echo 0.2.0
        assert backend.reports[key]["images"] == [] and backend.reports[key]["pushed"] == []
    recorded = [t for t in _tags(first, f"{NS}/runner-runs") if t.startswith("r4.")]
    assert recorded and all(".demo1.0-relay" in t for t in recorded), recorded

    repos = (f"{NS}/runner", f"{NS}/runner-build-cache", f"{NS}/runner-runs")
    snapshot = {r: _tags(first, r) for r in repos}
    relay = next(j for j in jobs.jobs if j.tag == "demo1.0-relay0.1.0" and j.root.platform == "linux/amd64")
    dry = anyio.run(job_on, second, relay.key, "r5", "rev5", "relay.yaml", selection.to_json(), False, ("--dry-run",))
    assert dry["returncode"] == 0 and dry["from_cache"] and dry["published_to_cache"] == [], dry["stderr"][-2000:]
    anonymous = anyio.run(lambda: job_on(second, relay.key, "r5", "rev5", "relay.yaml", selection.to_json(),
                                         extra=("--dry-run", "--no-smoke-cache"), REGISTRY_PASSWORD=""))
    assert anonymous["returncode"] == 0 and not anonymous["from_cache"] and anonymous["notes"], anonymous["stderr"]
    assert {r: _tags(first, r) for r in repos} == snapshot  # not one tag written or moved
    print(f"[runners] selective release: {len(results)} jobs, {len(added)} tags pushed; dry runs wrote nothing",
          flush=True)


def test_the_job_refuses_an_engine_of_another_platform(runners):
    first, _ = runners
    _, _, jobs = _jobs(first)
    arm = next(j for j in jobs.jobs if j.root.platform == "linux/arm64" and not j.tag)
    r = first.runner("job", arm.key[:16], "--build-cache", f"{first.registry}/{NS}/runner-build-cache", "--dry-run")
    assert r.returncode == 2 and "builds for linux/arm64, but this engine runs linux/amd64" in r.stderr, r.stderr
