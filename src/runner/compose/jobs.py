"""CI jobs from the stage plan: each distinct stage is built by exactly one job, across many runners.

A job is rooted at a stage that is a target's image (a leaf) or that stages of two or more jobs build
on or mount (shared: a runtime, a torch stage, a kernel build, an image SGLang starts from). It builds its
root and the stages only its root needs, starting from the shared stages other jobs published to the
build cache. Jobs come in waves: a job runs after the waves that publish what it starts from, so over
a whole release each stage is built once, and each vLLM wheel is compiled once, by one job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from runner.compose.lookup import Lookup, base_stages, cache_key, lookup
from runner.compose.plan import Plan
from runner.compose.stages import Stage

VLLM_COMPILE = "vllm-build"  # the name of the stage that compiles vLLM from source (CUDA, ROCm)


@dataclass
class Job:
    """One CI job: the stage it publishes (and, for a leaf, the target image it tests and pushes)."""

    root: Stage
    builds: list[Stage] = field(default_factory=list)  # the root and the stages only it needs, in order
    needs: set[str] = field(default_factory=set)  # keys of other jobs' roots it starts from
    wave: int = 0
    tag: str = ""  # the target tag when the root is a target's image

    @property
    def key(self) -> str:
        return self.root.key

    @property
    def vllm_compiles(self) -> int:
        return sum(s.name == VLLM_COMPILE for s in self.builds)

    def as_dict(self) -> dict:
        return {"key": self.key[:16], "stage": f"{self.root.kind} {self.root.name}", "platform": self.root.platform,
                "arch": self.root.platform.split("/")[1], "wave": self.wave, "tag": self.tag,
                "needs": sorted(k[:16] for k in self.needs), "builds": len(self.builds),
                "vllm_compiles": self.vllm_compiles}


@dataclass
class JobPlan:
    """The jobs of a plan, in waves, and the figures a reviewer checks before running anything."""

    jobs: list[Job]
    distinct_stages: int

    def waves(self) -> list[list[Job]]:
        out: list[list[Job]] = [[] for _ in range(max((j.wave for j in self.jobs), default=0))]
        for j in self.jobs:
            out[j.wave - 1].append(j)
        return out

    def shared(self) -> set[str]:
        """Keys of the stages other jobs start from: what a job publishes to the build cache."""
        return {k for j in self.jobs for k in j.needs}

    def find(self, key: str) -> Job:
        """The job whose root key starts with `key` (CI passes 16 characters)."""
        found = [j for j in self.jobs if j.key.startswith(key)]
        if len(found) != 1:
            from runner.model.errors import UserError

            raise UserError("no such job in the plan" if not found else "the job key is ambiguous", value=key,
                            hint="list the jobs with `runner plan --ci --format json`")
        return found[0]

    def owners(self) -> dict[str, Job]:
        """Job by the key of its root."""
        return {j.key: j for j in self.jobs}

    def simulate(self) -> list[Lookup]:
        """Every job's build-cache lookup (runner.compose.lookup, the walk the jobs run), in wave order,
        against a cache holding what the jobs before it published, each base image standing for
        itself: what a release run builds, job by job."""
        digests = _StandIns()
        shared, published, out = self.shared(), set[str](), list[Lookup]()
        for job in self.jobs:  # sorted by wave: a job's inputs come from earlier waves
            found = lookup(job.root, lambda s: cache_key(s, digests) in published, job.needs)
            published.update(cache_key(s, digests) for s in found.to_publish(shared))
            out.append(found)
        return out

    def figures(self) -> dict:
        runs = self.simulate()
        compiles = [sum(s.name == VLLM_COMPILE for s in r.build) for r in runs]
        return {"jobs": len(self.jobs), "waves": len(self.waves()), "jobs_per_wave": [len(w) for w in self.waves()],
                "stage_builds": sum(len(r.build) for r in runs), "distinct_stages": self.distinct_stages,
                "vllm_compiles": sum(compiles), "distinct_vllm_compiles": self.distinct_vllm_compiles,
                "max_vllm_compiles_per_job": max(compiles, default=0),
                "inputs_missing": sum(len(r.missing) for r in runs), "cross_base_edges": self.cross_base_edges}

    distinct_vllm_compiles: int = 0
    cross_base_edges: int = 0


class _StandIns(dict):
    """A made-up digest per base image and platform, for simulated lookups."""

    def __missing__(self, base: Stage) -> str:
        self[base] = digest = "sha256:" + base.key
        return digest


def ci_jobs(plan: Plan) -> JobPlan:
    """Jobs rooted at the leaves and the shared stages; every other stage goes to the one job that needs it."""
    stages = [s for s in plan.stages if s.kind != "base"]
    dependents: dict[str, set[str]] = defaultdict(set)
    for s in stages:
        for d in s.dependencies():
            dependents[d.key].add(s.key)
    tags = {leaf.stage.key: leaf.target.tag for leaf in plan.leaves}
    # dependents first: a stage whose dependents all belong to one job belongs to that job too (a row's
    # runtime with the connector builds that mount from it), else it is shared and roots a job of its own
    owner: dict[str, str] = {}
    for s in reversed(stages):
        owners = {owner[d] for d in dependents[s.key]}
        owner[s.key] = owners.pop() if s.key not in tags and len(owners) == 1 else s.key
    roots = {s.key: Job(s, tag=tags.get(s.key, "")) for s in stages if owner[s.key] == s.key}
    for s in stages:  # plan order: dependencies first, so each job's builds are in build order
        roots[owner[s.key]].builds.append(s)
    for job in roots.values():
        job.needs = {owner[d.key] for s in job.builds for d in s.dependencies()
                     if d.kind != "base" and owner[d.key] != job.key}

    def wave(job: Job) -> int:
        if not job.wave:
            job.wave = 1 + max((wave(roots[k]) for k in job.needs), default=0)
        return job.wave

    for job in roots.values():
        wave(job)
    jobs = sorted(roots.values(), key=lambda j: (j.wave, j.tag == "", j.tag, j.root.name, j.root.platform))
    cross = sum(s.chain()[0] not in base_stages(d) for s in stages for d in s.dependencies() if d is not s.parent)
    return JobPlan(jobs, len(stages), sum(s.name == VLLM_COMPILE for s in stages), cross)
