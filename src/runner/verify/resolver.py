"""`runner resolve`: every install step of every selected image resolved by uv against the real
indexes, for the image's python and platform (an amd64 machine checks arm64 sets), layered on what the
image's earlier steps installed. A step is resolved (with the versions that matter), a conflict (uv's
own explanation), or not checked (an index that cannot be reached from here, named).

Answers are cached under $RUNNER_CACHE_DIR/resolve by the ask's content (see resolve.Ask.key): an
unchanged matrix resolves instantly. Not-checked answers are never cached (the network may come back).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from runner.compose.mirrors import Mirrors
from runner.compose.plan import Leaf
from runner.compose.requirements import allowed_prereleases, expand
from runner.model.errors import UserError
from runner.model.files import JsonCache
from runner.verify.resolve import NOTABLE, Answer, Ask, Layers, Step, ask_for, changes, declared_pins, \
    not_allowed_prereleases, python_platform, steps_named, steps_of, whole_image_ask

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class StepReport:
    """One install step of one image on one platform, and what the resolver said."""

    tag: str
    platform: str
    step: int
    stage: str
    title: str
    status: str  # resolved, conflict, not-checked, nothing (every package built and taken as given)
    versions: dict[str, str] = field(default_factory=dict)
    message: str = ""
    notes: list[str] = field(default_factory=list)
    cached: bool = False

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def find_uv() -> str:
    """The uv binary: the `uv` package's, else the one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    if found := shutil.which("uv"):
        return found
    raise UserError("runner resolve needs uv", hint="install it with `pip install 'runner[resolve]'` or put uv on PATH")


class Resolver:
    """Runs uv for asks, at most `jobs` at once, remembering answers by content."""

    def __init__(self, jobs: int = 4, cache: Path | None = None, refresh: bool = False, timeout: float = 600) -> None:
        self.uv = find_uv()
        self.limit = anyio.CapacityLimiter(jobs)
        self.cache = JsonCache("resolve", cache)
        self.refresh, self.timeout = refresh, timeout
        self._answers: dict[str, Answer] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._reach: dict[str, str] = {}
        self.version = ""

    async def answer(self, ask: Ask) -> Answer:
        if not self.version:
            self.version = (await anyio.run_process([self.uv, "--version"])).stdout.decode().split()[1]
        key = ask.key(self.version)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:  # the same ask from many images runs once
            if key in self._answers:
                return self._answers[key]
            answer = await self._answer(ask, key)
            self._answers[key] = answer
            return answer

    async def _answer(self, ask: Ask, key: str) -> Answer:
        if not self.refresh and (known := self._read(key)):
            return known
        unreachable = [f"{url} ({why})" for url in ask.sources() if (why := await self.reach(url))]
        if unreachable:
            return Answer("not-checked", message="cannot be reached from here: " + ", ".join(unreachable))
        async with self.limit:
            answer = await self._run_uv(ask)
        if answer.status != "not-checked":
            self._write(key, answer)
        return answer

    async def reach(self, url: str) -> str:
        """Why a source cannot be reached ("" when it can): any HTTP answer counts as reachable."""
        host = re.match(r"^[a-z]+://[^/]*", url)[0] if "://" in url else url
        if host not in self._reach:
            if url.startswith("file://"):
                self._reach[host] = "" if Path(url[7:]).exists() else "no such folder"
            else:
                import httpx

                try:
                    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
                        await client.head(url)
                    self._reach[host] = ""
                except httpx.HTTPError as e:
                    self._reach[host] = type(e).__name__
        return self._reach[host]

    async def _run_uv(self, ask: Ask) -> Answer:
        with tempfile.TemporaryDirectory(prefix="runner-resolve-") as tmp:
            files = {name: Path(tmp, f"{name}.txt") for name in ("requirements", "constraints", "overrides", "build", "out")}
            files["requirements"].write_text("\n".join(ask.requirements) + "\n")
            argv = [self.uv, "pip", "compile", str(files["requirements"]), "--python-version", ask.python,
                    "--python-platform", ask.platform, "--index-strategy", "unsafe-best-match", "--no-header",
                    "--no-annotate", "--emit-index-annotation", "--color", "never",
                    "--output-file", str(files["out"])]
            # uv keeps the versions of an existing output file where it can: what is installed
            files["out"].write_text("".join(f"{p}\n" for p in ask.preferences))
            for name, flag, lines in (("constraints", "--constraint", ask.constraints),
                                      ("overrides", "--overrides", ask.overrides),
                                      ("build", "--build-constraints", ask.build_constraints)):
                if lines:
                    files[name].write_text("\n".join(lines) + "\n")
                    argv += [flag, str(files[name])]
            if ask.index_url:
                argv += ["--index-url", ask.index_url]
            for url in ask.extra_index_urls:
                argv += ["--extra-index-url", url]
            for url in ask.find_links:
                argv += ["--find-links", url]
            env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k == "UV_CACHE_DIR"}
            env.update(UV_NO_CONFIG="1", NO_COLOR="1", UV_HTTP_TIMEOUT="60", UV_PYTHON_DOWNLOADS="never")
            try:
                with anyio.fail_after(self.timeout):
                    done = await anyio.run_process(argv, env=env, check=False)
            except TimeoutError:
                return Answer("not-checked", message=f"uv did not answer within {self.timeout:.0f} s")
            out = files["out"].read_text() if done.returncode == 0 else ""
        err = _ANSI.sub("", done.stderr.decode())
        # an extra that does not exist is only a warning to uv, and the step then installs something else
        missing_extras = re.findall(r"warning: (The package `[^`]+` does not have an extra named `[^`]+`)", err)
        err = "\n".join(line for line in err.splitlines() if not line.startswith(("warning:", "Resolved ")))
        if done.returncode == 0 and missing_extras:
            return Answer("conflict", message="; ".join(missing_extras) + " (the extra is not published with that "
                                                                           "release: install from the source tree that declares it)")
        if done.returncode == 0:
            return _resolved(ask, out)
        if re.search(r"(dns error|Connect|timed out|Failed to fetch|error sending request)", err) and \
                "No solution found" not in err:
            return Answer("not-checked", message="uv could not reach an index: " + _tail(err))
        extras = "".join(f"{w}\n" for w in missing_extras)  # uv says this only as a warning, but it matters
        return Answer("conflict", message=extras + _tail(err, 4000))

    def _read(self, key: str) -> Answer | None:
        data = self.cache.get(key)
        try:
            answer = Answer(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            answer = None  # a file that does not read back is ignored and rewritten
        if answer is None or answer.status not in ("resolved", "conflict") or not isinstance(answer.message, str) \
                or not all(isinstance(m, dict) and all(isinstance(x, str) for kv in m.items() for x in kv)
                           for m in (answer.pins, answer.sources)):
            return None
        answer.cached = True
        return answer

    def _write(self, key: str, answer: Answer) -> None:
        self.cache.put(key, answer.to_json())


def _resolved(ask: Ask, out: str) -> Answer:
    pins, sources, last = {}, {}, ""
    for line in out.splitlines():
        if found := re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line):
            last = re.sub(r"[-_.]+", "-", found[1]).lower()
            pins[last] = found[2]
        elif (found := re.match(r"^\s+# from (\S+)", line)) and last:
            sources[last] = found[1]
    wrong = [f"{n}=={pins[n]} came from {sources.get(n, 'the default index')}, not from "
             f"{' or '.join(ask.sources())} as the step declares" for n in ask.from_declared
             if n in pins and not any(sources.get(n, "").rstrip("/").startswith(u.rstrip("/")) for u in ask.sources())]
    if wrong:
        return Answer("conflict", pins, sources, "; ".join(wrong) + " (is a flat folder of wheels given as an index? "
                                                                    "declare it as find_links)")
    return Answer("resolved", pins, sources)


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


async def resolve_leaf(resolver: Resolver, leaf: Leaf, mirrors: Mirrors,
                       on_step: Callable[[StepReport], None] = lambda r: None, whole: bool = True) -> list[StepReport]:
    """Every install step of one image, in order, each layered on the ones before; then (`whole`)
    the image's steps as one set."""
    t = leaf.target
    platform = python_platform(leaf.platform, leaf.stage.chain()[0].image)
    allowed = allowed_prereleases(leaf.stage)
    layers = Layers()
    reports = []
    chosen: dict[int, dict[str, str]] = {}  # step -> what it resolved to, for the whole-image set
    for step in steps_of(leaf.stage):
        ask, notes = ask_for(step, layers, t.python, platform, mirrors)
        report = StepReport(t.tag, leaf.platform, step.number, step.stage, step.title, "nothing", notes=list(notes))
        if ask is None:
            report.message = "every package of this step is built from source and taken as given"
        else:
            answer = await resolver.answer(ask)
            if answer.status == "conflict" and (named := {n for n in layers.unchecked if re.search(
                    rf"\b{re.escape(n)}\b", answer.message, re.I)}):
                # a pin handed on by a step that could not be checked may exist only on its index
                ask, _ = ask_for(step, layers, t.python, platform, mirrors, frozenset(named))
                answer = await resolver.answer(ask)
                report.notes.append(f"{', '.join(sorted(named))} taken as given: installed by an earlier step "
                                    "whose index cannot be reached from here")
            report.status, report.message, report.cached = answer.status, answer.message, answer.cached
            if answer.status == "resolved":
                chosen[step.number] = answer.pins
            await _layer(resolver, report, step, ask, answer, layers, allowed)
        on_step(report)
        reports.append(report)
    steps = steps_of(leaf.stage)
    if whole and len(steps) > 1:
        report = await resolve_image(resolver, leaf, steps, mirrors, platform, allowed, chosen)
        on_step(report)
        reports.append(report)
    return reports


WHOLE = "the whole image as one set"


async def resolve_image(resolver: Resolver, leaf: Leaf, steps: list[Step], mirrors: Mirrors, platform: str,
                        allowed: set[str], chosen: dict[int, dict[str, str]] | None = None) -> StepReport:
    """Every install step of the image resolved as one set (step 0 of the report): a conflict here is
    between steps that each resolve alone, named by their numbers. A requirement a step supersedes is
    held at what that step resolved to alone (`chosen`)."""
    t = leaf.target
    urls = {mirrors.url(expand(u, s.args)) for s in steps for r in (s.requirements,)
            for u in (r.index_url, *r.extra_index_urls, *r.find_links) if u}
    reachable = {u for u in urls if not await resolver.reach(u)}
    report = StepReport(t.tag, leaf.platform, 0, "image", WHOLE, "nothing")
    whole = whole_image_ask(steps, t.python, platform, mirrors, reachable, chosen=chosen)
    if whole is None:
        report.message = "every package of the image is built from source and taken as given"
        return report
    answer = await resolver.answer(whole.ask)
    if answer.status == "conflict" and (named := {n for n in whole.given_by if re.search(
            rf"\b{re.escape(n)}\b", answer.message, re.I)}):
        # a package whose step's index cannot be reached may exist only there
        whole = whole_image_ask(steps, t.python, platform, mirrors, reachable, frozenset(named), chosen)
        answer = await resolver.answer(whole.ask)
        report.notes.append(f"{', '.join(sorted(named))} taken as given: declared by a step whose index "
                            "cannot be reached from here")
    if away := sorted(set(whole.given_by.values())):
        report.notes.append(f"resolved from the reachable indexes instead of {', '.join(away)} (cannot be reached from here)")
    report.status, report.message, report.cached = answer.status, answer.message, answer.cached
    if answer.status == "conflict":
        titles = {s.number: s.title for s in steps}
        involved = steps_named(answer.message, whole.owners)
        report.notes.append("between steps: " + ("; ".join(f"{n} ({titles[n]})" for n in involved) or "(not named)"))
    elif answer.status == "resolved":
        report.versions = {n: answer.pins[n] for n in NOTABLE if n in answer.pins}
        if bad := not_allowed_prereleases(answer.pins, allowed):
            report.status = "conflict"
            report.message = f"resolves to pre-releases the recipe does not allow: {', '.join(bad)}"
    return report


async def _layer(resolver: Resolver, report: StepReport, step, ask: Ask, answer: Answer, layers: Layers,
                 allowed: set[str]) -> None:
    """Record what the step leaves in the image, and judge what it resolved to."""
    pins = declared_pins(step)
    if answer.status == "resolved":
        report.versions = {n: answer.pins[n] for n in NOTABLE if n in answer.pins}
        if changed := changes(layers.installed, answer.pins):
            report.notes.append("changes what earlier steps installed: " + ", ".join(changed))
        if bad := not_allowed_prereleases(answer.pins, allowed):
            report.status = "conflict"
            report.message = (f"resolves to pre-releases the recipe does not allow: {', '.join(bad)} "
                              "(pin a release, or name the package in the step's prereleases)")
        layers.installed.update(answer.pins)
        layers.pinned.update({n: answer.pins.get(n, v) for n, v in pins.items()})
        layers.unchecked -= set(answer.pins)
    else:
        layers.installed.update(pins)
        layers.pinned.update(pins)
        layers.unchecked |= set(pins)
    indexes = [u for u in (ask.index_url, *ask.extra_index_urls) if u and not await resolver.reach(u)]
    links = [u for u in ask.find_links if not await resolver.reach(u)]
    layers.sources = tuple(dict.fromkeys((*layers.sources, *indexes)))
    layers.find_links = tuple(dict.fromkeys((*layers.find_links, *links)))


async def resolve_all(leaves: Iterable[Leaf], mirrors: Mirrors, resolver: Resolver,
                      on_step: Callable[[StepReport], None] = lambda r: None, whole: bool = True) -> list[StepReport]:
    """Every selected image, images in parallel (uv runs are bounded by the resolver)."""
    results: dict[int, list[StepReport]] = {}
    leaves = list(leaves)

    async def one(i: int, leaf: Leaf) -> None:
        results[i] = await resolve_leaf(resolver, leaf, mirrors, on_step, whole)

    async with anyio.create_task_group() as tg:
        for i, leaf in enumerate(leaves):
            tg.start_soon(one, i, leaf)
    return [r for i in range(len(leaves)) for r in results[i]]
