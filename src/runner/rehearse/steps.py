"""What each step of a rehearsed build did, read from BuildKit's plain progress output: ran (or found
in the build cache), failed (with its own output), not fetchable here (the URLs the mirror could not
serve), not runnable here (it stopped where it calls a device compiler no CPU machine has, with no
published artifact to stand for its build, or where what it ran crashed under the emulator of another
machine), substituted (a declared device compile replaced), or not
run (an earlier step stopped it)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from runner.rehearse.rewrite import NOT_FETCHABLE
from runner.rehearse.substitutions import ANSWERED_IN, NOT_RUNNABLE
from runner.verify.upstream import UPSTREAMS

_HEADER = re.compile(r"^#(\d+) \[([a-z0-9._-]+) (\d+)/\d+\] RUN ")
_OUTPUT = re.compile(r"^#(\d+) \d+\.\d+ (.*)$")
_END = re.compile(r"^#(\d+) (DONE|CACHED|ERROR|CANCELED)\b(.*)$")


# A step's statuses, best first: a script rehearsed in several images counts by its best outcome.
STATUS_RANK = {"ran": 0, "substituted": 1, "not fetchable here": 2, "not runnable here": 3, "failed": 4, "not run": 5}
# the statuses of a step that could not be had or built here: what depends on it goes without
SHORT = ("not fetchable here", "not runnable here")


def _short(error: str) -> str:
    """BuildKit's error line without the whole script it quotes (which would crowd the step's own output
    out of the report): `executor failed running [...]: exit code: 2`."""
    return re.sub(r"^(:?\s*executor failed running \[).*(\]: exit code: \d+)$", r"\1...\2", error, flags=re.S)


_FETCH = re.compile(r"Failed to fetch: `(?P<url>[^`]+)`|Could not resolve host: (?P<host>\S+)")
_NO_SUCH_HOST = ("dns error", "failed to lookup address", "Could not resolve host", "Name or service not known",
                 "Temporary failure in name resolution")


def _unreachable(lines: list[str]) -> list[str]:
    """The URLs a failed step could not fetch because their host does not resolve from here (uv's and
    curl's words), when that is how it failed; [] for any other failure."""
    text = "\n".join(lines[-40:])
    if not any(words in text for words in _NO_SUCH_HOST):
        return []
    return list(dict.fromkeys(m["url"] or f"https://{m['host']}/" for m in _FETCH.finditer(text)))


# A step that stops where it calls a device compiler that the stand-in base cannot carry (its
# `pack/<backend>/standin.yaml` names them: nvcc, hipcc, DTK's clang, bisheng ...), where the index publishes
# no artifact to stand for its build (runner.rehearse.substitutions.DEVICE_COMPILES replaces those it does),
# is "not runnable here": it ran as written up to the compiler, and no rehearsal here can go further.
_MISSING = (r"No such file or directory: '{tool}'",  # Python's FileNotFoundError
            r"command '{tool}' failed: No such file or directory",  # setuptools' spawn
            r"(?:^|[\s:]){tool}: (?:command )?not found",  # the shell's
            r"(?:^|[\s:]){tool}: No such file or directory")


def _missing_compilers(lines: list[str], compilers: tuple[str, ...]) -> list[str]:
    """The device compilers a failed step's last lines say are missing, when that is how it failed."""
    if not compilers:
        return []
    tool = rf"(?:[^\s'\"]*/)?(?P<tool>{'|'.join(map(re.escape, compilers))})"
    text = "\n".join(lines[-10:])  # the lines just before the error: an earlier one may be a probe that failed
    return list(dict.fromkeys(m["tool"] for p in _MISSING for m in re.finditer(p.format(tool=tool), text, re.M)))


# qemu-user runs another machine's programs here (an arm64 image on amd64) and says so when one crashes:
# torch 2.8's aarch64 build crashes at import under it (oneDNN's xbyak_aarch64 "Can't open MIDR_EL1 sysfs
# entry", then SIGSEGV: cann8.5-a3-sglang0.5.8, building vLLM). Such a step needs the machine itself.
_EMULATOR_CRASH = re.compile(r"qemu: uncaught target signal \d+ \([^)]*\)")


def emulator_crashed(log: str) -> bool:
    """Whether a build's log says a program crashed under qemu-user."""
    return bool(_EMULATOR_CRASH.search(log))


def _emulator_crash(lines: list[str]) -> list[str]:
    """What a failed step needs when the program it ran crashed under qemu-user, said with qemu's words."""
    found = [m[0] for m in map(_EMULATOR_CRASH.search, lines[-20:]) if m]
    return [f"a machine of the image's platform (under qemu-user here: {found[-1]})"] if found else []


def _absent_folders(lines: list[str], absent: dict[str, str]) -> list[str]:
    """The vendor image's folders that a failed step's last lines name, of those its stand-in could not carry
    (ROCm 7.2's /opt/rocm/share/amd_smi: no sdist of amdsmi at that release), when that is how it failed."""
    text = "\n".join(lines[-20:])
    return [f"{folder} of the vendor image, which its stand-in could not carry: {why}"
            for folder, why in absent.items() if folder in text]


_CLONE_TO = re.compile(r"""git clone\b[^\n]*?"?(?P<url>https://[^\s"]+\.git)"?\s+"?(?P<dest>/[^\s"]+)"?[ \t]*$""", re.M)


def _outside_sdist(lines: list[str], script: str) -> list[str]:
    """What a failed step looked for in a clone that the source mirror makes of a partial sdist (SGLang
    publishes only python/: runner.verify.upstream.UPSTREAMS), outside the part published, when that is
    how it failed: the repository's URL and the missing folder, for "not fetchable here"."""
    text = "\n".join(lines[-60:])
    found = []
    for m in _CLONE_TO.finditer(script):
        up = UPSTREAMS.get(m["url"])
        if up is None or not up.subdir:
            continue
        for p in re.finditer(rf"{re.escape(m['dest'])}/([^\s:'\"/]+)[^\s:'\"]*: No such file or directory", text):
            if p[1] != up.subdir:
                found.append(f"{m['url']} {p[1]}/ (not in its sdist, which the mirror is made of: {up.missing})")
    return list(dict.fromkeys(found))


def script_id(script: str) -> str:
    """A short name for a recipe script as the recipe writes it: reports of separate rehearsals name the
    same script alike, so their coverage adds up (bench/rehearse_all.py --tally)."""
    return hashlib.sha256(script.encode()).hexdigest()[:16]


@dataclass
class StepResult:
    stage: str
    title: str
    status: str = "not run"  # one of STATUS_RANK
    cached: bool = False
    urls: list[str] = field(default_factory=list)
    output: str = ""
    key: str = ""  # the step's script as the recipe writes it: what coverage counts
    starved: list[str] = field(default_factory=list)  # a failed step's mounted inputs that were not fetchable here
    needs: list[str] = field(default_factory=list)  # a step not runnable here: the device compilers it called
    answered_in: list[str] = field(default_factory=list)  # the source's files whose indexes it pointed elsewhere

    def as_dict(self) -> dict:
        return {"stage": self.stage, "title": self.title, "script": script_id(self.key) if self.key else "",
                "status": self.status, "cached": self.cached,
                "urls": self.urls, "output": self.output[-3000:] if self.status in ("failed", "not runnable here") else "",
                "starved": self.starved, "needs": self.needs}


def mark_starved(results: list[StepResult], mounts: list[list[str]]) -> None:
    """Note on each failed step which stages it builds on (`mounts`, per step, by Dockerfile stage name: those
    it mounts and those its stage starts from) had a step short here (SHORT), or starved in turn: the
    failure then follows from what could not be had or built here (an empty wheel folder), and the report
    says so instead of blaming the step alone."""
    short: dict[str, list[str]] = {}  # stage name -> its steps that left its output incomplete
    for r, mounted in zip(results, mounts):
        if r.status == "failed":
            r.starved = [f"[{m}] {t}" for m in mounted for t in short.get(m, ())]
        if r.status in SHORT or r.starved:
            short.setdefault(r.stage, []).append(r.title)


@dataclass
class _Vertex:
    stage: str
    position: int
    lines: list[str] = field(default_factory=list)
    end: str = ""
    error: str = ""


def read(progress: str, expected: list[tuple[str, str, bool, str]], compilers: tuple[str, ...] = (),
         absent: dict[str, str] | None = None) -> list[StepResult]:
    """Results for the expected RUN steps (Dockerfile stage name, title, substituted, script), in build order;
    `compilers`: the device compilers the stand-in base lacks (none on a real base); `absent`: the vendor
    image's folders the stand-in could not carry, with why."""
    vertices: dict[str, _Vertex] = {}
    for line in progress.splitlines():
        if m := _HEADER.match(line):
            vertices.setdefault(m[1], _Vertex(m[2], int(m[3])))
        elif (m := _END.match(line)) and m[1] in vertices:
            vertices[m[1]].end, vertices[m[1]].error = m[2], m[3].strip()
        elif (m := _OUTPUT.match(line)) and m[1] in vertices:
            vertices[m[1]].lines.append(m[2])
    by_stage: dict[str, list[_Vertex]] = {}
    for v in sorted(vertices.values(), key=lambda v: v.position):
        by_stage.setdefault(v.stage, []).append(v)
    seen: dict[str, int] = {}
    out = []
    for stage, title, substituted, key in expected:
        n = seen[stage] = seen.get(stage, -1) + 1
        result = StepResult(stage, title, key=key)
        found = by_stage.get(stage, [])
        if n < len(found):
            v = found[n]
            urls = [x.split(NOT_FETCHABLE, 1)[1].strip() for x in v.lines if NOT_FETCHABLE in x]
            result.cached = v.end == "CACHED"
            tools = [x.split(NOT_RUNNABLE, 1)[1].strip() for x in v.lines if NOT_RUNNABLE in x]
            result.answered_in = [x.split(ANSWERED_IN, 1)[1].strip() for x in v.lines if ANSWERED_IN in x]
            if v.end in ("DONE", "CACHED") and tools and not urls:  # a declared device compile with no artifact
                result.status, result.needs = "not runnable here", list(dict.fromkeys(tools))
            elif v.end in ("DONE", "CACHED"):
                result.status = "not fetchable here" if urls else ("substituted" if substituted else "ran")
            elif v.end == "ERROR" and (unreachable := _unreachable(v.lines)):
                # a URL the recipe's source names itself (vLLM's requirements/rocm-build.txt names PyTorch's
                # ROCm index), which the mirror map cannot point here, on a host this machine cannot resolve
                result.status, urls = "not fetchable here", unreachable
                result.output = "\n".join(v.lines[-60:])
            elif v.end == "ERROR" and (outside := _outside_sdist(v.lines, key)):
                result.status, urls = "not fetchable here", outside
                result.output = "\n".join(v.lines[-60:])
            elif v.end == "ERROR" and (missing := _missing_compilers(v.lines, compilers)):
                result.status, result.needs = "not runnable here", missing
                result.output = "\n".join(v.lines[-60:])
            elif v.end == "ERROR" and (gone := _absent_folders(v.lines, absent or {})):
                result.status, urls = "not fetchable here", gone
                result.output = "\n".join(v.lines[-60:])
            elif v.end == "ERROR" and (machine := _emulator_crash(v.lines)):
                result.status, result.needs = "not runnable here", machine
                result.output = "\n".join(v.lines[-60:])
            elif v.end == "ERROR":
                result.status = "failed"
                result.output = "\n".join(v.lines[-60:] + ([_short(v.error)] if v.error else []))
            result.urls = urls
        out.append(result)
    return out
