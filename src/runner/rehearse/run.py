"""`runner rehearse`: build the selected images on the local BuildKit as the release would (the same
plan, the same rendered scripts, the same smoke tests), with the declared substitutions only, and
report what every step did and what every image's smoke tests say.

Images are built one at a time: the source mirror tells a step's "not fetchable" URLs by the time
they were asked for. What a rehearsal builds is removed at the end unless it is asked to keep it."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio

from runner.compose.dockerfile import render
from runner.compose.lookup import base_stages
from runner.compose.mirrors import Mirrors
from runner.compose.plan import Leaf, make_plan
from runner.compose.stages import Run, Stage, StageKind
from runner.engines.docker import Docker, DockerBuilder
from runner.model.errors import InfrastructureError
from runner.model.naming import MACHINES
from runner.model.targets import Target
from runner.rehearse import official_standin, release_files, standin, steps
from runner.rehearse.rewrite import OUTPUTS_STEP, Rewriter, steps_in_order
from runner.rehearse.substitutions import (COMPILE_MARK, STANDIN_PYTHON, IndexElsewhere, Substitution, mirrored_elsewhere,
                                           python_substitutions)
from runner.release import pipeline
from runner.verify.source_mirror import FILES, SourceMirror
from runner.verify.upstream import index_url, unpack, wanted_refs

_NOT_HERE = ("not checked here: nothing built by a device compile runs (kernels need the accelerator), and "
             "what a stand-in cannot carry is listed with it")


class StandinFailed(Exception):
    """A stand-in base could not be built: the images on it are reported so, the others go on."""


def failing_output(log: str, lines: int = 30) -> str:
    """The failing step's own last lines of a BuildKit plain-progress log (`#6 ...` lines of the step
    that says `#6 ERROR`), where the error is; the log's tail when it has no such step."""
    errors = re.findall(r"^#(\d+) ERROR", log, re.M)
    if not errors:
        return log.strip()[-1500:]
    own = [ln for ln in log.splitlines() if ln.startswith(f"#{errors[-1]} ")]
    return "\n".join(own[-lines:])


@dataclass
class Rehearsed:
    """One target on one platform after its rehearsal."""

    tag: str
    platform: str
    steps: list[steps.StepResult] = field(default_factory=list)
    substitutions: list[Substitution] = field(default_factory=list)
    smoke: list = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    standin_failed: bool = False  # a stand-in base could not be built: nothing of the image ran

    @property
    def verdict(self) -> str:
        if self.standin_failed:
            return "stand-in not built"
        failed = [s for s in self.steps if s.status == "failed"]
        short = [s.status for s in self.steps if s.status in steps.SHORT]
        if failed and all(s.starved for s in failed):
            return short[0]  # what failed, failed for want of what could not be fetched or built here
        if failed or (self.error and not self.steps):
            return "failed step"
        if short:  # the build may have stopped at one
            return short[0]
        if self.error:
            return "failed: " + self.error[:200]
        if not self.smoke or not all(c.passed for c in self.smoke):
            return "smoke failed"
        return "passed"

    def as_dict(self) -> dict:
        return {"tag": self.tag, "platform": self.platform, "verdict": self.verdict, "seconds": round(self.seconds, 1),
                "error": self.error[-3000:], "steps": [s.as_dict() for s in self.steps],
                "substitutions": [vars(s) for s in self.substitutions],
                "smoke": [c.as_dict() for c in self.smoke]}


class Rehearsal:
    """Bases, mirror and builder for one rehearsal run (use as a context manager)."""

    def __init__(self, project, docker: Docker, keep: bool = False) -> None:
        self.project, self.docker, self.keep = project, docker, keep
        self.mirror = SourceMirror()
        self.bases: dict[tuple[str, str], tuple[str, list[Substitution], bool]] = {}
        self.failed: dict[tuple, str] = {}  # stand-ins that could not be built, with why
        # per backend release, the vendor image's folders its stand-in could not carry, with why
        self.absent: dict[tuple[str, str], dict[str, str]] = {}
        self.images: list[str] = []
        self.answered: set[str] = set()  # the indexes the package index answers for (declared, INDEXES_ELSEWHERE)
        self.workdir = Path(tempfile.mkdtemp(prefix="runner-rehearsal-"))

    async def __aenter__(self) -> Rehearsal:
        await self.docker.require_engine()  # said once, with the same advice as every build
        self.mirror.files.mkdir(parents=True, exist_ok=True)
        self.mirror.start()
        return self

    def mirrors(self, plan) -> Mirrors:
        """The mirror map: every declared repository and download host, and the indexes the steps name;
        the repositories the index's sdists can make are made first (cached)."""
        self.obtained = self.mirror.prepare(wanted_refs(plan.stages))
        indexes = {"/".join(u.split("/", 3)[:3]) + "/" for s in plan.stages for st in s.steps
                   if isinstance(st, Run) and st.requirements for u in (st.requirements.index_url,
                   *st.requirements.extra_index_urls, *st.requirements.find_links) if "://" in u}
        found = {h: f"{self.mirror.base}{FILES}{h.split('://', 1)[1]}" for h in indexes}
        # declared substitutions: release files made from the index's wheels, indexes the index answers
        self.made, self.unmade = release_files.make(map(_fetches, _runs(plan.stages)),
                                                    {lf.platform for lf in plan.leaves}, self.mirror.files,
                                                    self.mirror.upstreams)
        self.answered = answered_indexes(_runs(plan.stages))
        return Mirrors.of({**found, **self.mirror.mirror_map(), **{url: index_url() for url in self.answered}})

    async def __aexit__(self, *exc) -> None:
        self.mirror.stop()
        if not self.keep:
            if self.images:
                await self.docker.run("rmi", "-f", *self.images, check=False, timeout=600)
            await self.docker.run("builder", "prune", "-af", check=False, timeout=1800)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def standin_key(self, stage: Stage, t: Target, leaf: Stage) -> tuple:
        """What identifies a base's stand-in: the image, its platform and the service release put on it."""
        official = (official_standin.official_of(self.project.recipes, t, stage)
                    or official_standin.vendor_of(t, stage, leaf))
        return stage.image, stage.platform, official

    async def base(self, stage: Stage, t: Target, leaf: Stage) -> tuple[str, list[Substitution], bool]:
        """The image a base stage becomes: itself where the daemon has it or can pull it, else a stand-in
        (for a layered row's official image, the Debian stand-in with the service's release on it; for a
        vendor image whose service and torch the recipe checks, the same with both at its versions)."""
        key = self.standin_key(stage, t, leaf)
        official = key[2]
        if key in self.failed:  # built once and failed: the next image on it is told the same
            raise StandinFailed(self.failed[key])
        if key in self.bases:
            return self.bases[key]
        code, out, _ = await self.docker.run("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", stage.image,
                                             check=False)
        if code != 0 or out.strip() != stage.platform:
            code, _, _ = await self.docker.run("pull", "--platform", stage.platform, stage.image, check=False, timeout=300)
        if code == 0:
            self.bases[key] = (stage.image, [], False)
            return self.bases[key]
        try:
            tag, subs = await self.debian(stage, t)
            if official is not None:
                # the index as it stood when the service came out: the era the image was made in (an official
                # image is built on its release day; a vendor's, of that release)
                official = replace(official, era=await anyio.to_thread.run_sync(
                    official_standin.release_day, official.service, official.version))
                tag, torch, wants = await self.official(tag, official, stage.platform)
                subs = [official.substitution(tag, torch, wants), *subs[1:]]
        except StandinFailed as e:
            self.failed[key] = str(e)
            raise
        self.bases[key] = (tag, subs, True)
        return self.bases[key]

    async def debian(self, stage: Stage, t: Target) -> tuple[str, list[Substitution]]:
        """The backend's Debian stand-in for the base's release (built once) and its substitutions."""
        version = t.original_backend_version
        spec = standin.standin_spec(self.project.pack_path, t.backend, version)
        sdists, carried, missing = {}, [], []
        for folder, project in spec.from_index:  # the vendor image's folders the index publishes, at its release
            try:
                sdists[f"{project}-{version}"] = await anyio.to_thread.run_sync(self.mirror.upstreams.sdist, project, version)
                carried.append((folder, f"{project}-{version}"))
            except (LookupError, InfrastructureError) as e:
                missing.append(f"{folder} ({e})")
                self.absent.setdefault((t.backend, version), {})[folder] = str(e)
        tag = standin.tag(t.backend, stage.platform, spec, [p.read_bytes() for p in standin.local_authorities()], carried)
        if (await self.docker.run("image", "inspect", tag, check=False))[0] != 0:
            ctx = self.workdir / tag.rsplit(":", 1)[1]
            ctx.mkdir(parents=True, exist_ok=True)
            shutil.copy(standin.rootfs(stage.platform), ctx / "rootfs.tar")
            authorities = standin.local_authorities()
            (ctx / "ca").mkdir(exist_ok=True)
            for crt in authorities:
                shutil.copy(crt, ctx / "ca" / crt.name)
            (ctx / "index").mkdir(exist_ok=True)
            for name, sdist in sdists.items():
                shutil.move(unpack(sdist, ctx / "unpacked" / name), ctx / "index" / name)
            shutil.rmtree(ctx / "unpacked", ignore_errors=True)
            (ctx / "Dockerfile").write_text(standin.dockerfile(spec, bool(authorities), carried))
            await self._build(tag, ctx, stage)
        carry = "; it cannot carry: " + ", ".join([*spec.cannot_carry, *missing]) if spec.cannot_carry or missing else ""
        subs = [Substitution("stand-in base", stage.image, f"the Debian {standin.STANDIN_SUITE} stand-in {tag}",
                             f"the vendor image cannot be pulled here{carry}")]
        subs += [Substitution("stand-in base", f"{folder} of {stage.image}",
                              f"the package index's sdist of {name.rsplit('-', 1)[0]} {version}, unpacked there",
                              "the vendor image cannot be pulled here, and the index publishes that folder's project "
                              "at the image's release") for folder, name in carried]
        if standin.local_authorities():
            subs.append(Substitution("stand-in base", "the vendor image's certificate authorities",
                                     "them and this machine's own (SSL_CERT_FILE set for uv)",
                                     "the network here re-signs TLS with an authority of its own"))
        return tag, subs

    async def official(self, debian: str, official, platform: str) -> tuple[str, str, str]:
        """The stand-in of an official image on the Debian stand-in (built once), the torch it carries and
        the torch its service's own wheel requires."""
        tag = official_standin.tag(debian, official, platform)
        if (await self.docker.run("image", "inspect", tag, check=False))[0] != 0:
            ctx = self.workdir / tag.rsplit(":", 1)[1]
            ctx.mkdir(parents=True, exist_ok=True)
            (ctx / "Dockerfile").write_text(official_standin.dockerfile(debian, official))
            if official.built_without_device:  # the release's sdist, which the stand-in builds with no device
                try:
                    sdist = await anyio.to_thread.run_sync(self.mirror.upstreams.sdist, official.service, official.version)
                    shutil.copyfile(sdist, ctx / official.sdist_name)
                except LookupError as e:
                    raise StandinFailed(f"the stand-in for {official.image} needs the sdist of {official.service} "
                                        f"{official.version}: {e}") from None
            await self._build(tag, ctx, Stage(kind=StageKind.BASE, name="base", platform=platform, image=official.image))
        code, out, _ = await self.docker.run("run", "--rm", "--network", "none", "--entrypoint", "python3", tag, "-c",
                                             official_standin.TORCH_VERSION, check=False, timeout=300)
        wanted, wants, _ = await self.docker.run("run", "--rm", "--network", "none", "--entrypoint", "python3", tag, "-c",
                                                 official_standin.TORCH_WANTED, official.service, check=False, timeout=300)
        return tag, out.strip() if code == 0 else "", wants.strip() if wanted == 0 else ""

    async def _build(self, tag: str, ctx: Path, stage: Stage) -> None:
        for attempt in (1, 2):
            code, out, err = await self.docker.run("build", "--platform", stage.platform, "--network", "host", "-t", tag,
                                                   str(ctx), check=False, timeout=3600)
            # qemu-user crashes now and then on another machine's programs (uv aborted with signal 6 building
            # cuda12.8-vllm0.13.0's arm64 stand-in, and ran the next time): a stand-in's build is tried twice
            if code == 0 or attempt == 2 or not steps.emulator_crashed(err or out):
                break
        if code != 0:
            twice = " (tried twice: qemu-user crashed the first time)" if attempt == 2 else ""
            raise StandinFailed(f"the stand-in for {stage.image} could not be built{twice}:\n{failing_output(err or out)}")
        self.images.append(tag)

    async def one(self, leaf: Leaf, builder: DockerBuilder) -> Rehearsed:
        """Rehearse one target on one platform: rewrite, build, read the steps, smoke-test."""
        t: Target = leaf.target
        result = Rehearsed(t.tag, leaf.platform)
        start = time.monotonic()
        chosen = {}
        try:
            for base in base_stages(leaf.stage):
                chosen[base.key] = await self.base(base, t, leaf.stage)
        except StandinFailed as e:  # this image cannot be rehearsed here; the rest of the selection can
            result.error, result.standin_failed, result.seconds = str(e), True, time.monotonic() - start
            return result
        stand_ins = any(c[2] for c in chosen.values())
        python = STANDIN_PYTHON if stand_ins else ""
        rw = Rewriter(lambda s: chosen[s.key][0], python or t.python, self.mirror.base, index_url())
        rw.outputs(leaf.stage)
        new = rw.stage(leaf.stage)
        result.substitutions = [s for c in chosen.values() for s in c[1]]
        if stand_ins:
            result.substitutions += python_substitutions(t.python)
        result.substitutions += list({str(s): s for subs in rw.substitutions.values() for s in subs}.values())
        result.substitutions += self.elsewhere(new, leaf.platform)
        rendered = render(new, builder.form, builder.mirrors)
        expected = [(rendered.stage_names[s.key], title, _compiled(s.steps[i]), rw.originals.get((s.key, i), title))
                    for s, i, title in steps_in_order(new)]
        image = f"runner-rehearsal/{t.tag}:{leaf.platform.replace('/', '-')}"
        try:
            built = await builder.build_stage(new, image)
            self.images.append(image)
        except pipeline.BuildError as e:
            result.error = str(e)
            built = None
        # on a stand-in, the vendor's device compilers are missing: a step that stops at one is not runnable here
        compilers = standin.standin_spec(self.project.pack_path, t.backend).compilers if stand_ins else ()
        # and a folder of the vendor image it could not carry: a step that stops on one is not fetchable here
        absent = self.absent.get((t.backend, t.original_backend_version), {}) if stand_ins else {}
        result.steps = steps.read((builder.progress or {}).get(image, ""), expected, compilers, absent)
        # a substitution in a source's file applied only where the file named what it replaces (said by the step)
        answered = {f for st in result.steps for f in st.answered_in}
        result.substitutions = [s for s in result.substitutions if not s.file or s.file in answered]
        # what each step builds on: the stages it mounts, and the stages its own stage starts from (a torch
        # that was not fetchable in a parent leaves the child's build without it)
        steps.mark_starved(result.steps, [[rendered.stage_names.get(a.key, "") for a in s.chain()[:-1]]
                                          + ([rendered.stage_names.get(m.stage.key, "") for m in s.steps[i].mounts]
                                             if isinstance(s.steps[i], Run) else []) for s, i, _ in steps_in_order(new)])
        if built is not None:
            checked = replace(t, python=python) if python else t  # the checks expect the substituted python
            result.smoke = await pipeline.smoke(builder, built.handle, built.image_id, Leaf(checked, leaf.platform, new),
                                                self.project.pack_path)
        result.seconds = time.monotonic() - start
        return result


    def elsewhere(self, stage: Stage, platform: str) -> list[Substitution]:
        """What the image's steps fetch that the source mirror answers from elsewhere (declared)."""
        found: dict[str, Substitution] = {}
        machine = MACHINES.get(platform, "")
        for s, i, _ in steps_in_order(stage):
            for m, kind in mirrored_elsewhere(_fetches(s.steps[i])):
                if isinstance(kind, IndexElsewhere):
                    if m[0] not in self.answered:  # left to the source mirror, which answers 404
                        continue
                    sub = kind.substitution(m[0])
                elif (made := self.made.get(release_files.url_on(m, machine))):
                    sub = made
                else:
                    continue
                found.setdefault(str(sub), sub)
        return list(found.values())


def answered_indexes(runs: list[Run]) -> set[str]:
    """The declared indexes (INDEXES_ELSEWHERE) the package index answers for: each one that every step
    naming it can have answered so (a step pinning a build only that index has leaves it to the mirror)."""
    named: dict[str, bool] = {}
    for st in runs:
        for m, kind in mirrored_elsewhere(_fetches(st)):
            if isinstance(kind, IndexElsewhere):
                named[m[0]] = named.get(m[0], True) and kind.answers(st.requirements)
    return {url for url, every in named.items() if every}


def _runs(stages) -> list[Run]:
    return [st for s in stages for st in s.steps if isinstance(st, Run)]


def _fetches(step) -> str:
    """The step's script and the indexes its requirements name: what the source mirror may answer."""
    if not isinstance(step, Run):
        return ""
    r = step.requirements
    return "\n".join([step.script, *((r.index_url, *r.extra_index_urls, *r.find_links) if r else ())])


def _compiled(step) -> bool:
    """Whether a step runs something other than the recipe wrote: a device compile's artifact, or a
    fetch the source mirror answers from elsewhere."""
    return isinstance(step, Run) and (COMPILE_MARK in step.script or bool(mirrored_elsewhere(_fetches(step))))


async def rehearse(project, targets: list[Target], build_info: dict[str, str], keep: bool = False,
                   progress: Callable[[Rehearsed], None] | None = None) -> dict:
    """Rehearse every selected target on each of its platforms; the report as a dict."""
    plan = make_plan(targets, project.recipes)
    results: list[Rehearsed] = []
    with Docker() as docker:
        async with Rehearsal(project, docker, keep) as r:
            builder = DockerBuilder(docker, build_info, project.pack_path, mirrors=r.mirrors(plan), keep_progress=True)
            try:
                for leaf in plan.leaves:
                    results.append(await r.one(leaf, builder))
                    if progress:
                        progress(results[-1])
            finally:
                builder.close()
    return report(plan, results)


def report(plan, results: list[Rehearsed]) -> dict:
    """The rehearsal report: every image, and how many distinct recipe scripts ran, were substituted,
    were not fetchable here or failed (each script counted by its best outcome)."""
    rank = steps.STATUS_RANK
    best: dict[str, str] = {}
    for r in results:
        for s in r.steps:
            if s.title != OUTPUTS_STEP:  # the rehearsal's own step is no recipe script
                best[s.key] = min(best.get(s.key, "not run"), s.status, key=rank.get)
    counts = {k: sum(v == k for v in best.values()) for k in rank}
    return {"images": [r.as_dict() for r in results],
            "verdicts": {v: sum(r.verdict == v for r in results) for v in sorted({r.verdict for r in results})},
            "coverage": {**counts, "total": len(best),
                         "distinct_scripts_in_plan": len({st.script for s in plan.stages for st in s.steps
                                                          if isinstance(st, Run)})},
            "not_checked": [_NOT_HERE]}
