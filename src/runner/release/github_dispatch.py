"""The DAG driver's backend on GitHub Actions: each CI job is a run of its own of the job workflow
(`.github/workflows/release-job.yml`, started by workflow_dispatch), so a failed leg is re-run alone
and no run holds more than one job. Runs are found again by their name (`job KEY of run RUN: ...`):
a job that succeeded in an earlier attempt of the release is not dispatched again, one still running
is waited for, a failed one is dispatched anew.

Requests go to GitHub's REST API with the workflow's own token (actions: write), from this process;
one listing of the job workflow's runs, refreshed at most every `interval` seconds, serves every
waiting job, so a release of hundreds of jobs stays far below the API's hourly budget.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from runner.compose.jobs import Job, JobPlan
from runner.model.errors import Failed
from runner.model.targets import Selection
from runner.release.dag_driver import Result

_PAGES = 10  # 1000 runs: a week of releases of the job workflow
_APPEARS = 600.0  # seconds a dispatched run may take to show up in the listing
_ATTEMPTS = 6
_TRANSIENT = {408, 429, 500, 502, 503, 504}


def run_name(job: Job, run: str) -> str:
    """The run name release-job.yml gives the job's run (its `label` input): how the driver finds it."""
    return f"job {job.key[:16]} of run {run}: {job.tag or job.root.kind + ' ' + job.root.name} {job.root.platform}"


@dataclass
class GitHubDispatch:
    """Dispatches and follows job runs of one release run."""

    client: httpx.AsyncClient  # base_url: the API, Authorization: the token
    repository: str  # owner/name
    workflow: str  # the job workflow's file name
    ref: str  # the branch or tag the runs use
    run_id: str  # the release run's ID
    inputs: dict[str, str]  # inputs every job gets (selection, dry_run)
    entries: dict[str, dict[str, Any]]  # job key -> its entry as runner.release.fanout emits it
    interval: float = 60.0
    _runs: list[dict] = field(default_factory=list)
    _read_at: float = -1e9
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def run(self, job: Job) -> Result:
        prefix = run_name(job, self.run_id).split(":", 1)[0] + ":"
        latest = await self._latest(prefix)
        if latest is not None and latest["status"] == "completed" and latest["conclusion"] == "success":
            return Result(True, "passed in an earlier attempt", url=latest["html_url"])
        if latest is None or latest["status"] == "completed":
            known = {r["id"] for r in self._runs if r.get("display_title", "").startswith(prefix)}
            await self._dispatch(job)
            latest = await self._appeared(prefix, known)
        while latest["status"] != "completed":
            await anyio.sleep(self.interval)
            latest = await self._latest(prefix) or latest
        return Result(latest["conclusion"] == "success", latest["conclusion"] or "", url=latest["html_url"])

    async def dispatch_workflow(self, workflow: str, inputs: dict[str, str]) -> None:
        """Start another workflow (the release's continuation) on the same ref."""
        await self._request("POST", f"/repos/{self.repository}/actions/workflows/{workflow}/dispatches",
                            f"dispatch {workflow}", json={"ref": self.ref, "inputs": inputs})

    async def _dispatch(self, job: Job) -> None:
        e = self.entries[job.key[:16]]
        await self.dispatch_workflow(self.workflow, {
            **self.inputs, "key": job.key[:16], "run": self.run_id, "arch": e["arch"], "large": str(e["large"]).lower(),
            "timeout": str(e["timeout"]), "label": run_name(job, self.run_id)})

    async def _appeared(self, prefix: str, known: set[int]) -> dict:
        waited = 0.0
        while waited < _APPEARS:
            await anyio.sleep(min(self.interval, 15.0))
            waited += min(self.interval, 15.0)
            await self._refresh(force=True)
            new = [r for r in self._runs if r.get("display_title", "").startswith(prefix) and r["id"] not in known]
            if new:
                return max(new, key=lambda r: r["id"])
        raise Failed(f"the dispatched run `{prefix}` did not appear within {_APPEARS:.0f}s")

    async def _latest(self, prefix: str) -> dict | None:
        await self._refresh()
        found = [r for r in self._runs if r.get("display_title", "").startswith(prefix)]
        return max(found, key=lambda r: r["id"]) if found else None

    async def _refresh(self, force: bool = False) -> None:
        async with self._lock:
            now = anyio.current_time()
            if not force and now - self._read_at < self.interval:
                return
            since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7)).strftime("%Y-%m-%d")
            runs: list[dict] = []
            for page in range(1, _PAGES + 1):
                r = await self._request("GET", f"/repos/{self.repository}/actions/workflows/{self.workflow}/runs",
                                        f"list the runs of {self.workflow}",
                                        params={"event": "workflow_dispatch", "per_page": 100, "page": page,
                                                "created": f">={since}"})
                batch = r.json().get("workflow_runs") or []
                runs += batch
                if len(batch) < 100:
                    break
            self._runs, self._read_at = runs, anyio.current_time()


    async def _request(self, method: str, url: str, what: str, **kwargs) -> httpx.Response:
        """One API call, retried with backoff while GitHub or the way there fails for a while."""
        fault = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                await anyio.sleep(min(60.0, 4.0 * 2 ** attempt))
            try:
                r = await self.client.request(method, url, **kwargs)
            except httpx.TransportError as e:
                fault = f"{type(e).__name__}: {e}"
                continue
            if r.status_code not in _TRANSIENT:
                if r.status_code >= 400:
                    raise Failed(f"{what}: HTTP {r.status_code}: {r.text[:300]}")
                return r
            fault = f"HTTP {r.status_code}"
        raise Failed(f"{what}: {fault} after {_ATTEMPTS} attempts")


def client(token: str, api: str = "https://api.github.com") -> httpx.AsyncClient:
    """An API client with the workflow's token (kept in this process's memory only)."""
    return httpx.AsyncClient(base_url=api, timeout=httpx.Timeout(30.0, connect=10.0),
                             headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                      "X-GitHub-Api-Version": "2022-11-28"})



async def drive_release(jobs: JobPlan, selection: Selection, token: str, repository: str, ref: str, run: str,
                        dry_run: bool, runners: int, minutes: float, release_workflow: str, release_inputs: dict[str, str],
                        job_workflow: str = "release-job.yml", api: str = "https://api.github.com",
                        interval: float = 60.0) -> dict:
    """Drive one release run on GitHub (runner.release.dag_driver): dispatch each job's run when its
    inputs passed, at most `runners` at once; after `minutes`, start nothing more and, when jobs are
    left, start the release workflow again for the same run (it waits for this one, then continues)."""
    from runner.release import fanout
    from runner.release.dag_driver import drive, summary

    entries = {e["key"]: e for e in fanout.github(jobs, selection)["jobs"]}
    async with client(token, api) as http:
        backend = GitHubDispatch(http, repository, job_workflow, ref, run,
                                 {"selection": selection.to_json(), "dry_run": str(dry_run).lower()}, entries, interval)
        deadline = anyio.current_time() + minutes * 60
        driven = await drive(jobs, backend, runners, deadline)
        if not driven.finished:
            await backend.dispatch_workflow(release_workflow, {**release_inputs, "run": run})
    return {"run": run, "finished": driven.finished, "continued": not driven.finished,
            "failed": [k[:16] for k in driven.failed], "jobs": summary(jobs, driven)}
