"""A release's CI jobs run as a DAG: each job starts as soon as every job it starts from succeeded and
a runner slot is free (longest remaining path first, as runner.compose.schedule models it), never
waiting for a wave. A failed job is reported once; the jobs that need it are not started and say
"input failed in job K". Where the jobs run is a Backend's business (GitHub: one dispatched workflow
run per job, runner.release.github_dispatch); a backend that finds a job already done from an
earlier attempt says so, so a driver run again only runs what is left.

At its deadline (before the CI job's own time limit) the driver stops, running jobs and all, and
reports the jobs left, so that another driver run continues the same release (a backend finds the
runs still going and waits for them instead of starting them again).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from runner.compose.jobs import Job, JobPlan
from runner.compose.schedule import remaining


@dataclass
class Result:
    """How one job ended."""

    ok: bool
    detail: str = ""  # why it failed, or where it ran
    skipped: bool = False  # not run: an input failed
    url: str = ""


class Backend(Protocol):
    """Runs one job to its end (or finds it done already) and says how it went."""

    async def run(self, job: Job) -> Result: ...


@dataclass
class Driven:
    """What a driver run did: every job's result, and the jobs left for another run."""

    results: dict[str, Result] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)  # job keys not started before the deadline

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.results.items() if not r.ok]

    @property
    def finished(self) -> bool:
        return not self.left


async def drive(jobs: JobPlan, backend: Backend, limit: int, deadline: float = math.inf,
                started: Callable[[Job], None] | None = None) -> Driven:
    """Run every job of the plan through `backend`, at most `limit` at once, each when its inputs
    succeeded; stop at `deadline` (anyio's clock)."""
    by_key = {j.key: j for j in jobs.jobs}
    after: dict[str, list[str]] = {k: [] for k in by_key}
    for j in jobs.jobs:
        for k in j.needs:
            after[k].append(j.key)
    waiting = {j.key: set(j.needs) for j in jobs.jobs}
    rank = remaining(jobs)
    ready = [(-rank[k], k) for k, v in waiting.items() if not v]
    heapq.heapify(ready)
    out = Driven()
    send, receive = anyio.create_memory_object_stream[tuple[str, Result]](math.inf)

    async def one(job: Job) -> None:
        try:
            result = await backend.run(job)
        except Exception as e:  # noqa: BLE001 - a backend fault fails this job, not the release
            result = Result(False, f"{type(e).__name__}: {e}"[:500])
        await send.send((job.key, result))

    def stop_dependants(failed: str) -> None:
        todo = list(after[failed])
        while todo:
            k = todo.pop()
            if k not in out.results:
                out.results[k] = Result(False, f"not run: input failed in job {failed[:16]}", skipped=True)
                todo.extend(after[k])

    with anyio.CancelScope(deadline=deadline):  # at the deadline, running jobs are left to the next driver
        async with anyio.create_task_group() as tg:
            running = 0
            while ready or running:
                while ready and running < max(1, limit):
                    _, key = heapq.heappop(ready)
                    if key in out.results:  # stopped by a failed input meanwhile
                        continue
                    running += 1
                    if started:
                        started(by_key[key])
                    tg.start_soon(one, by_key[key])
                if not running:
                    break
                key, result = await receive.receive()
                running -= 1
                out.results[key] = result
                if not result.ok:
                    stop_dependants(key)
                    continue
                for k in after[key]:
                    waiting[k].discard(key)
                    if not waiting[k] and k not in out.results:
                        heapq.heappush(ready, (-rank[k], k))
    out.left = [j.key for j in jobs.jobs if j.key not in out.results]
    return out


def summary(jobs: JobPlan, driven: Driven) -> list[dict]:
    """One row per job: what it built, and how it ended."""
    rows = []
    for j in jobs.jobs:
        r = driven.results.get(j.key)
        state = "left for the next driver run" if r is None else "passed" if r.ok else "not run" if r.skipped else "failed"
        rows.append({"key": j.key[:16], "tag": j.tag, "stage": f"{j.root.kind} {j.root.name}",
                     "platform": j.root.platform, "state": state, "detail": r.detail if r else "", "url": r.url if r else ""})
    return rows
