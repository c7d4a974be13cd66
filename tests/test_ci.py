"""CI definitions: valid against the official schemas, no high-severity zizmor finding, the same
dagger calls the module defines, and a fan-out that covers exactly the selected targets as a DAG
within the platforms' limits."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.release import fanout
from runner.model.targets import Selection
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
GITHUB = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GITLAB = [ROOT / ".gitlab-ci.yml", *sorted((ROOT / "ci" / "gitlab").glob("*.yml"))]


def _schema_check(schema: str, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
                          capture_output=True, text=True)


def test_github_workflows_match_the_schema():
    assert len(GITHUB) == 5
    out = _schema_check("vendor.github-workflows", *GITHUB)
    assert out.returncode == 0, out.stdout + out.stderr


def _jobs(targets, project):
    from runner.compose.jobs import ci_jobs
    from runner.compose.plan import make_plan

    return ci_jobs(make_plan(targets, project.recipes))


def _gitlab_files(targets, project, selection: Selection) -> dict[str, dict]:
    return fanout.gitlab_files(targets, selection, lambda some: _jobs(some, project))


def test_gitlab_files_match_the_schema(tmp_path, project):
    files = _gitlab_files(project.targets, project, Selection())  # the whole matrix: one child per backend
    assert set(files) == {"child-pipeline.yml"} | {f"child-{t.backend}.yml" for t in project.targets}
    for name, pipeline in files.items():  # as the plan job writes them
        variables = {"RUNNER_RELEASE_DRY_RUN": "true", "RUNNER_RELEASE_PROMOTE": "false"}
        (tmp_path / name).write_text(json.dumps({**pipeline, "variables": {**pipeline.get("variables", {}), **variables}}))
    out = _schema_check("vendor.gitlab-ci", *GITLAB, *sorted(tmp_path.glob("*.yml")))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_schema_check_can_fail(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-22.04\n    steps: nope\n")
    assert _schema_check("vendor.github-workflows", bad).returncode != 0


def test_zizmor_finds_nothing_of_high_severity():
    out = subprocess.run([str(BIN / "zizmor"), "--offline", "--min-severity", "high", "--format", "json",
                          str(ROOT / ".github" / "workflows")], capture_output=True, text=True)
    findings = json.loads(out.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:3000]


def test_actions_are_pinned_and_permissions_least():
    for wf in GITHUB:
        data = yaml.safe_load(wf.read_text())
        assert data["permissions"] == {}, wf.name
        for name, job in data["jobs"].items():
            # an OIDC identity only for the jobs that push images (Sigstore signs their provenance with it);
            # only the release's driver dispatches and follows the job runs
            signs = "--oidc-request-token" in json.dumps(job.get("steps", []))
            expected = {"contents": "read", **({"id-token": "write"} if signs else {}),
                        **({"actions": "write"} if (wf.name, name) == ("release.yml", "drive") else {})}
            if (wf.name, name) == ("outdated.yml", "outdated"):  # pushes its proposal branch, opens its pull request
                expected = {"contents": "write", "pull-requests": "write"}
            assert job["permissions"] == expected, (wf.name, name)
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("./.github/actions/"):  # our own: its steps are pinned in turn
                    local = yaml.safe_load((ROOT / step["uses"] / "action.yml").read_text())["runs"]["steps"]
                    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", s["uses"]) for s in local if "uses" in s)
                elif "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


DOCS = [ROOT / "README.md", ROOT / "ci" / "README.md"]
# Functions of the engine's core types a call may chain on a returned Container, Directory or File.
_PATH = {"path": {"type": "STRING_KIND"}}
CORE = {"Container": {"terminal": {}, "export": _PATH, "stdout": {}},
        "Directory": {"export": _PATH, "entries": {}},
        "File": {"export": _PATH, "contents": {}}}
GLOBAL_FLAGS = {"-o": True, "--output": True, "-m": True, "--mod": True, "--progress": True, "-q": False,
                "--json": False}


def _scripts(value) -> list[str]:
    """Every string of a parsed YAML file: the scripts as the CI system reads them (plain scalars folded)."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _scripts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _scripts(v)]
    return [value] if isinstance(value, str) else []


def _calls(text: str) -> list[list[str]]:
    """Each `dagger call ...` / `ci/dagger-call.sh ...` in a text, as words (line continuations joined,
    comments and quotes dropped), chained calls included: `select ... with-registry ... merge --run R`."""
    text = re.sub(r"\\\n\s*|\n\s{2,}(?=--)", " ", text)
    found = []
    for m in re.finditer(r"(?:ci/dagger-call\.sh|dagger call)\s+([^\n;|>`#]*)", text):
        words = [w.strip('"').rstrip(")") for w in m[1].split()]
        if words and not words[0].startswith("..."):
            found.append([w for w in words if w != "..."])
    return found


def check_call(objects: dict, words: list[str]) -> None:
    """Every function and flag of one call exists on the object it applies to, chained calls included."""
    obj = objects["Runner"]
    fn = obj["functions"][""]  # flags before the first function belong to the constructor
    kind, expect_value = "Runner", False
    for word in words:
        if expect_value:
            expect_value = False
        elif word.startswith("${") and word.endswith("[@]}"):
            continue  # a shell array of optional flags, e.g. "${publish[@]}" (its flags are spelt where it is set)
        elif word in GLOBAL_FLAGS or word.split("=", 1)[0] in GLOBAL_FLAGS:
            expect_value = GLOBAL_FLAGS[word.split("=", 1)[0]] and "=" not in word
        elif word.startswith("--"):
            name, _, value = word[2:].partition("=")
            assert name.replace("-", "_") in fn["args"], (words, word)
            expect_value = not value and fn["args"][name.replace("-", "_")]["type"] != "BOOLEAN_KIND"
        elif kind in CORE:
            assert word in CORE[kind], (words, word)
            fn, kind = {"args": CORE[kind][word]}, ""
        else:
            assert word.replace("-", "_") in obj["functions"], (words, word)
            fn = obj["functions"][word.replace("-", "_")]
            kind = fn["returns"].rstrip("?")
            obj = objects.get(kind, {"functions": {}})


def test_every_documented_and_ci_call_is_one_the_module_accepts():
    import anyio

    from tests.dagger_query import typedefs

    objects = anyio.run(typedefs)["objects"]
    calls = {str(f.relative_to(ROOT)): _calls(f.read_text()) for f in DOCS}
    calls |= {str(f.relative_to(ROOT)): [c for t in _scripts(yaml.safe_load(f.read_text())) for c in _calls(t)]
              for f in GITHUB + GITLAB}
    assert sum(map(len, calls.values())) >= 20 and len(calls["README.md"]) >= 8
    # the release's registry steps are chained on the selection and the registry, each declared once
    chained = [w for ws in calls.values() for w in ws if "with-registry" in w]
    assert {"merge", "promote", "report", "digests", "discard"} <= {w for ws in chained for w in ws}
    assert all(ws[0] == "select" for ws in chained)
    for words in (w for ws in calls.values() for w in ws):
        check_call(objects, words)


def test_the_call_check_can_fail():
    import anyio

    from tests.dagger_query import typedefs

    objects = anyio.run(typedefs)["objects"]
    for bad in (["build", "summary"], ["images", "export", "--path", "out/"], ["build", "--backend", "cann", "--nope"],
                ["images", "publish", "--registry", "r", "--single-arch-only"],
                ["select", "--backend", "cann", "build", "summary"], ["select", "build", "--backend", "cann"],
                ["select", "merge", "--run", "1"],
                ["select", "with-registry", "--address", "r", "merge", "--backend", "x"]):
        with pytest.raises(AssertionError):
            check_call(objects, bad)


def test_fan_out_covers_exactly_the_selected_targets_and_platforms(project):
    selected = Selection(backend="cann", include_deprecated=False)
    jobs = _jobs(selected.apply(project.targets), project)
    gh = fanout.github(jobs, selected)
    every = gh["jobs"]
    assert sorted((j["tag"], j["platform"]) for j in every if j["tag"]) == sorted(
        (t.tag, p) for t in selected.apply(project.targets) for p in t.platforms)
    assert all(j["runs_on"] == ("ubuntu-22.04-arm" if j["arch"] == "arm64" else "ubuntu-22.04") for j in every)
    assert all(j["timeout"] == (360 if j["large"] else 120) for j in every)  # 360: GitHub-hosted runners' limit
    assert gh["schedule"]["critical_path_hours"] <= gh["schedule"]["dag_hours"] <= gh["schedule"]["waves_hours"]
    whole = _jobs(project.targets, project)
    files = _gitlab_files(project.targets, project, Selection())
    # more than a GitLab.com pipeline holds: one child pipeline per backend, which child-pipeline.yml triggers
    assert len(whole.jobs) + 3 > fanout.GITLAB_MAX_JOBS
    trigger = files.pop("child-pipeline.yml")
    backends = sorted({t.backend for t in project.targets})
    assert sorted(files) == [f"child-{b}.yml" for b in backends]
    assert {b: trigger[b]["trigger"]["include"] for b in backends} == {
        b: [{"artifact": f"child-{b}.yml", "job": "pipelines"}] for b in backends}
    assert trigger["pipelines"]["artifacts"]["paths"] == sorted(files)
    built, of_backend = {}, {}
    for name, child in files.items():
        backend = child["variables"]["RUNNER_RELEASE_BACKEND"]
        assert name == f"child-{backend}.yml"
        its = {k: v for k, v in child.items() if isinstance(v, dict) and v.get("stage") == "build"}
        assert len(its) + 2 <= fanout.GITLAB_MAX_JOBS  # with merge and promote
        assert all(json.loads(v["variables"]["RUNNER_JOB_SELECTION"])["backend"] == backend for v in its.values())
        assert child["promote"]["needs"] == ["merge"] and child["stages"] == ["build", "merge", "promote"]
        assert not set(its) & set(built)
        built |= its
        of_backend |= {(v["variables"]["RUNNER_JOB_TAG"], v["variables"]["RUNNER_JOB_PLATFORM"]): backend
                       for v in its.values() if v["variables"]["RUNNER_JOB_TAG"] != "-"}
    # every target and platform in exactly one child: its backend's
    assert sorted(of_backend) == sorted((t.tag, p) for t in project.targets for p in t.platforms)
    assert all(of_backend[t.tag, p] == t.backend for t in project.targets for p in t.platforms)
    assert sorted(v["variables"]["RUNNER_JOB_KEY"] for v in built.values()) == sorted(j.key[:16] for j in whole.jobs)
    assert all(len(v["needs"]) <= fanout.GITLAB_MAX_NEEDS for v in built.values())
    # the DAG: each job needs exactly the jobs that publish what it starts from, nothing waits for a wave
    owners = whole.owners()
    for job in whole.jobs:
        entry = built[fanout.gitlab_name(job)]
        assert sorted(entry["needs"]) == sorted(fanout.gitlab_name(owners[k]) for k in job.needs)
        arch = job.root.platform.split("/")[1]
        assert entry["variables"]["RUNNER_JOB_RUNNER"].endswith(arch)  # arm64 jobs on arm64 runners only
        assert entry["timeout"] == ("3h" if fanout.large(job) else "2h")  # 3 h: GitLab.com's hosted runners' limit
    # nothing a parent pipeline forwards (RUNNER_BACKEND, ...) can shadow a job's own variables
    assert all(set(v["variables"]) <= {"RUNNER_JOB_KEY", "RUNNER_JOB_TAG", "RUNNER_JOB_RUNNER", "RUNNER_JOB_SELECTION",
                                       "RUNNER_JOB_PLATFORM"} for v in built.values())
    # one backend stays one child pipeline, as the parent triggers it
    one = _gitlab_files(selected.apply(project.targets), project, selected)
    assert list(one) == ["child-pipeline.yml"] and "variables" not in one["child-pipeline.yml"]
    assert one["child-pipeline.yml"] == fanout.gitlab(jobs, selected)


def test_the_emitter_keeps_to_the_platforms_limits(project, monkeypatch):
    from runner.model.errors import UserError

    jobs = _jobs(Selection(backend="cuda").apply(project.targets), project)
    monkeypatch.setattr(fanout, "GITHUB_MAX_DISPATCHES", len(jobs.jobs) - 1)
    with pytest.raises(UserError, match="dispatches at most"):
        fanout.github(jobs, Selection(backend="cuda"))
    monkeypatch.setattr(fanout, "GITLAB_MAX_JOBS", len(jobs.jobs))
    with pytest.raises(UserError, match="holds at most"):
        fanout.gitlab(jobs, Selection(backend="cuda"))
    # split per backend, a backend that alone is too big still fails, named, with what to narrow
    with pytest.raises(UserError, match=f"backend cuda has {len(jobs.jobs)} jobs") as e:
        _gitlab_files(project.targets, project, Selection())
    assert "RUNNER_BACKEND_VERSION" in e.value.hint


def test_the_release_workflow_drives_a_dag_then_merges_and_promotes():
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    jobs = release["jobs"]
    assert list(jobs) == ["drive", "merge", "promote"]
    assert jobs["merge"]["needs"] == "drive" and "needs.drive.outputs.finished == 'true'" in jobs["merge"]["if"]
    assert "needs.merge.result == 'success'" in jobs["promote"]["if"] and jobs["promote"]["environment"] == "release"
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "release-job.yml").read_text())
    assert list(job["jobs"]) == ["job"] and "needs" not in job["jobs"]["job"]  # a leg is a run of its own


def test_dagger_call_script_passes_the_selection_from_the_environment(tmp_path):
    fake = tmp_path / "dagger"  # records its argv: this tests the wrapper script, not an engine
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "RUNNER_BACKEND": "cann", "RUNNER_VARIANT": "910b",
           "RUNNER_SERVICE_VERSION": "0.14.1", "RUNNER_PLATFORM": "linux/arm64", "RUNNER_SERVICE": ""}

    def call(*args: str) -> list[str]:
        return subprocess.run(["sh", str(ROOT / "ci" / "dagger-call.sh"), *args], env=env, capture_output=True,
                              text=True, check=True).stdout.split("\n")[:-1]

    # the selection belongs to `select`, before the chained `images summary` and its own arguments
    assert call("select", "images", "summary") == [
        "call", "select", "--backend", "cann", "--service-version", "0.14.1", "--variant", "910b",
        "--platform", "linux/arm64", "images", "summary"]
    # a release acts on whole multi-arch tags, a driven one on what the workflow carries on: no variant, no platform
    merge = call("select", "with-registry", "--address", "r", "merge", "--run", "7")
    assert merge == ["call", "select", "--backend", "cann", "--service-version", "0.14.1", "with-registry",
                     "--address", "r", "merge", "--run", "7"]
    assert "--platform" not in call("select", "drive", "--run", "7") and "--variant" not in call("select", "drive")
    # anything not chained on select is passed on untouched: a CI job carries its own selection
    assert call("job", "--key", "k", "--selection", "{}") == ["call", "job", "--key", "k", "--selection", "{}"]
    # a GitLab child pipeline of one backend (a release split per backend) narrows the forwarded selection
    env |= {"RUNNER_BACKEND": "", "RUNNER_RELEASE_BACKEND": "rocm"}
    assert call("select", "with-registry", "--address", "r", "merge", "--run", "7")[:6] == [
        "call", "select", "--backend", "rocm", "--service-version", "0.14.1"]
    assert call("job", "--key", "k", "--selection", "{}") == ["call", "job", "--key", "k", "--selection", "{}"]


def test_engine_version_comes_from_dagger_json_only():
    out = subprocess.run(["sh", str(ROOT / "ci" / "engine-version.sh")], capture_output=True, text=True, check=True)
    pinned = json.loads((ROOT / "dagger.json").read_text())["engineVersion"]
    assert out.stdout.strip() == pinned
    for f in GITHUB + GITLAB:
        assert pinned.lstrip("v") not in f.read_text(), f"{f.name} repeats the engine version"


def test_scripts_are_posix_sh():
    for script in (ROOT / "ci").glob("*.sh"):
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0, script
