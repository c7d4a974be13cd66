"""How long a release takes on N runners, before anything runs: a model of stage times, and the CI
jobs (runner.compose.jobs) scheduled on it two ways. As a DAG, a job starts as soon as the jobs it
starts from are done and a runner is free (longest remaining path first, the order the CI driver
uses too); in waves, a wave starts when the whole wave before it is done.

The minutes are assumptions, printed with every figure so that a reviewer can weigh them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from runner.compose.jobs import VLLM_COMPILE, Job, JobPlan
from runner.compose.stages import Stage, StageKind

# assumed minutes per stage, on the runner sizes ci/README.md names
MINUTES = {"runtime": 5, "vllm compile": 90, "other compile": 30, "target image": 10, "other stage": 5,
           "job start": 3}


def stage_minutes(stage: Stage) -> float:
    """The model's time for one stage."""
    if stage.name == VLLM_COMPILE:
        return MINUTES["vllm compile"]
    if stage.compiles:
        return MINUTES["other compile"]
    if stage.kind == StageKind.RUNTIME:
        return MINUTES["runtime"]
    return MINUTES["target image"] if stage.tag else MINUTES["other stage"]


def job_minutes(job: Job) -> float:
    """A job's time: starting it (runner, engine, build-cache pulls) and building its stages."""
    return MINUTES["job start"] + sum(stage_minutes(s) for s in job.builds)


def remaining(jobs: JobPlan) -> dict[str, float]:
    """Each job's own time plus the longest chain of jobs after it: what to start first."""
    after: dict[str, list[Job]] = {j.key: [] for j in jobs.jobs}
    for j in jobs.jobs:
        for k in j.needs:
            after[k].append(j)
    memo: dict[str, float] = {}
    for j in sorted(jobs.jobs, key=lambda j: -j.wave):  # later waves first: their chains are known
        memo[j.key] = job_minutes(j) + max((memo[d.key] for d in after[j.key]), default=0.0)
    return memo


@dataclass(frozen=True)
class Modelled:
    """A release's modelled time, in minutes."""

    runners: int
    dag: float  # jobs start when their inputs are done
    waves: float  # each wave waits for the one before
    critical_path: float  # the longest chain of jobs: no runner count does better

    def as_dict(self) -> dict:
        return {"runners": self.runners, "dag_hours": round(self.dag / 60, 2), "waves_hours": round(self.waves / 60, 2),
                "critical_path_hours": round(self.critical_path / 60, 2), "assumed_minutes": MINUTES}


def model(jobs: JobPlan, runners: int) -> Modelled:
    """The release on `runners` runners, as a DAG and in waves."""
    rank = remaining(jobs)
    dag = _list_schedule(jobs.jobs, runners, rank, {j.key: set(j.needs) for j in jobs.jobs})
    waves = sum(_list_schedule(w, runners, rank, {j.key: set() for j in w}) for w in jobs.waves())
    return Modelled(runners, dag, waves, max(rank.values(), default=0.0))


def _list_schedule(jobs: list[Job], runners: int, rank: dict[str, float], needs: dict[str, set[str]]) -> float:
    """When the last job ends, starting each ready job (inputs done) on a free runner, longest
    remaining path first."""
    by_key = {j.key: j for j in jobs}
    waiting = {k: set(v) & by_key.keys() for k, v in needs.items()}
    ready = [(-rank[k], k) for k, v in waiting.items() if not v]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (end, key)
    now = end = 0.0
    while ready or running:
        while ready and len(running) < max(1, runners):
            _, key = heapq.heappop(ready)
            heapq.heappush(running, (now + job_minutes(by_key[key]), key))
        now, done = heapq.heappop(running)
        end = max(end, now)
        for k, v in waiting.items():
            if done in v:
                v.discard(done)
                if not v:
                    heapq.heappush(ready, (-rank[k], k))
    return end
