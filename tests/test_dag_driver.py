"""The DAG driver (runner.release.dag_driver) on the seed matrix's jobs: a job starts only when every
job it starts from passed, never more at once than the limit, a failed job stops exactly its
dependants ("input failed in job K"), the deadline leaves the rest to the next driver run. Its GitHub
backend's requests (not checked here: GitHub's API itself, which cannot be reached from here) carry
exactly the inputs release-job.yml declares and find runs by the name it gives them."""

from __future__ import annotations

import json
import random

import anyio
import httpx
import pytest
import yaml

from runner.compose.jobs import ci_jobs
from runner.compose.plan import make_plan
from runner.model.targets import Selection
from runner.release.dag_driver import Result, drive
from runner.release.github_dispatch import GitHubDispatch, run_name
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def jobs(project):
    return ci_jobs(make_plan(Selection(backend="cuda", backend_version="12.8").apply(project.targets), project.recipes))


class Recorder:
    """Runs nothing: records when each job starts and ends, fails the ones named."""

    def __init__(self, fail: set[str] = frozenset(), seconds: float = 0.002) -> None:
        self.fail, self.seconds, self.events, self.running, self.most = fail, seconds, [], 0, 0

    async def run(self, job) -> Result:
        self.events.append(("start", job.key))
        self.running += 1
        self.most = max(self.most, self.running)
        await anyio.sleep(self.seconds * random.random())
        self.running -= 1
        self.events.append(("end", job.key))
        return Result(job.key not in self.fail, "failed on purpose" if job.key in self.fail else "")


async def test_each_job_starts_after_its_inputs_passed_and_within_the_limit(jobs):
    backend = Recorder()
    driven = await drive(jobs, backend, 4)
    ended: set[str] = set()
    for what, key in backend.events:
        if what == "start":
            assert jobs.owners()[key].needs <= ended, key
        else:
            ended.add(key)
    assert driven.finished and not driven.failed and len(ended) == len(jobs.jobs)
    assert backend.most == 4  # the runners were used, and never more of them


async def test_a_failed_job_stops_exactly_its_dependants(jobs):
    shared = next(j for j in jobs.jobs if not j.tag and j.wave == 2)
    dependants, todo = set(), [shared.key]
    while todo:
        k = todo.pop()
        for j in jobs.jobs:
            if k in j.needs and j.key not in dependants:
                dependants.add(j.key)
                todo.append(j.key)
    backend = Recorder(fail={shared.key})
    driven = await drive(jobs, backend, 8)
    started = {k for what, k in backend.events if what == "start"}
    assert driven.results[shared.key].detail == "failed on purpose"  # reported once, by its own job
    assert dependants and not dependants & started
    assert {k for k, r in driven.results.items() if r.skipped} == dependants
    assert all(driven.results[k].detail.startswith("not run: input failed in job ") for k in dependants)
    assert started == {j.key for j in jobs.jobs} - dependants  # everything else ran


async def test_the_deadline_leaves_the_rest_to_the_next_driver_run(jobs):
    driven = await drive(jobs, Recorder(seconds=0.2), 2, anyio.current_time() + 0.15)
    assert not driven.finished and driven.left and len(driven.results) + len(driven.left) == len(jobs.jobs)


def _github(runs: list[dict], sent: list):
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "POST":
            body = json.loads(request.content)
            runs.append({"id": 1000 + len(runs), "display_title": body["inputs"]["label"], "status": "completed",
                         "conclusion": "success", "html_url": "https://example.invalid/run"})
            return httpx.Response(204)
        return httpx.Response(200, json={"workflow_runs": list(runs)})

    return httpx.AsyncClient(base_url="https://api.example.invalid", transport=httpx.MockTransport(answer))


async def test_the_github_backend_dispatches_what_the_job_workflow_declares(jobs):
    from runner.release import fanout

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release-job.yml").read_text())
    declared = set(workflow[True]["workflow_dispatch"]["inputs"])  # yaml reads the key `on` as True
    assert len(declared) <= fanout.GITHUB_MAX_INPUTS and workflow["run-name"] == "${{ inputs.label }}"
    entries = {e["key"]: e for e in fanout.github(jobs, Selection(backend="cuda"))["jobs"]}
    done, failed, new = jobs.jobs[0], jobs.jobs[1], jobs.jobs[2]
    runs = [{"id": 1, "display_title": run_name(done, "77"), "status": "completed", "conclusion": "success",
             "html_url": "u1"},
            {"id": 2, "display_title": run_name(failed, "77"), "status": "completed", "conclusion": "failure",
             "html_url": "u2"}]
    sent: list[httpx.Request] = []
    async with _github(runs, sent) as client:
        backend = GitHubDispatch(client, "o/r", "release-job.yml", "main", "77",
                                 {"selection": Selection(backend="cuda").to_json(), "dry_run": "false"}, entries,
                                 interval=0.01)
        assert (await backend.run(done)).detail == "passed in an earlier attempt"  # not dispatched again
        assert (await backend.run(failed)).ok  # a failed earlier attempt is dispatched anew
        assert (await backend.run(new)).ok
    posts = [json.loads(r.content) for r in sent if r.method == "POST"]
    assert len(posts) == 2 and all(p["ref"] == "main" and set(p["inputs"]) == declared for p in posts)
    assert posts[1]["inputs"]["key"] == new.key[:16] and posts[1]["inputs"]["run"] == "77"
    assert posts[1]["inputs"]["arch"] == new.root.platform.split("/")[1]
    assert all(r.url.path == "/repos/o/r/actions/workflows/release-job.yml/dispatches" for r in sent if r.method == "POST")
