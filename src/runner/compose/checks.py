"""Static checks on the stage plan, before anything is built (`runner plan` runs them):

- search paths: an ENV may only extend `PATH` and `LD_LIBRARY_PATH`, never replace what the base
  image (or an earlier stage) put there;
- build arguments: an ARG marked required must be read by a step of its stage (a script, or the base
  image it names), not only copied into an ENV: otherwise `--build-arg` relabels an image the
  scripts still build from hard-coded values;
- downloads: every URL a script fetches from comes from a declared source (runner.compose.sources:
  once, with its version in it), or is an index or find-links URL of the step's declared requirements;
- installs: what lands in an image is installed by steps rendered from declared requirements (the
  ones `runner resolve` checks); build stages, whose tools never reach the image, may install freely;
- shell: every distinct script, as the Dockerfile's SHELL runs it, passes shellcheck at the level that
  reports an expression inside single quotes (SC2016); a reviewed exception is a `# shellcheck
  disable=SCxxxx  # reason` line in the recipe's script, and must give its reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from runner.compose.sources import declared_url_at
from runner.compose.stages import Env, Run, Stage, StageKind

SEARCH_PATHS = ("PATH", "LD_LIBRARY_PATH")
_URL = re.compile(r"https?://")
_INSTALL = re.compile(r"\b(?:uv pip|pip3?|python3? -m pip) install\b[^\n]*")


@dataclass(frozen=True)
class Finding:
    """One problem in one stage."""

    check: str  # search-path, required-arg, undeclared-url, undeclared-install
    stage: str  # kind and name
    key: str  # the stage's content key
    message: str

    def __str__(self) -> str:
        return f"{self.check}: stage {self.stage} ({self.key[:12]}): {self.message}"


def check_stages(stages: Iterable[Stage]) -> list[Finding]:
    """Every finding over distinct stages, in plan order."""
    stages = list(stages)
    found: list[Finding] = []
    for stage in stages:
        found += _search_paths(stage) + _required_args(stage) + _urls(stage) + _installs(stage)
    return found + check_shell(stages)[0]


def not_checked() -> list[str]:
    """Checks that cannot run on this machine, and why."""
    return [] if shutil.which("shellcheck") else ["not checked here: the scripts' shellcheck (install Debian's "
                                                  "shellcheck package)"]


# What shellcheck reports that no script here should change, and why.
SHELLCHECK_EXCLUDED = {
    "SC2086": "build arguments hold only values matrix.yaml's patterns allow (no spaces, globs or quotes), and "
              "lists such as apt package names are split on purpose",
    "SC1091": "the environment scripts a step sources belong to the vendor base image, which is not here",
}
_DIRECTIVE = re.compile(r"#\s*shellcheck\s+disable=(\S+)(.*)$", re.M)


def distinct_scripts(stages: Iterable[Stage]) -> dict[str, Stage]:
    """Every distinct RUN script of the stages, with the first stage that runs it."""
    scripts: dict[str, Stage] = {}
    for stage in stages:
        for step in stage.steps:
            if isinstance(step, Run):
                scripts.setdefault(step.script, stage)
    return scripts


def check_shell(stages: Iterable[Stage]) -> tuple[list[Finding], str]:
    """shellcheck's findings over every distinct script (one run for all), and a note when shellcheck is
    not installed ("" when it ran)."""
    scripts = distinct_scripts(stages)
    found = [_finding("shellcheck", stage, f"`# shellcheck disable={m[1]}` gives no reason: add `# why` after it")
             for script, stage in scripts.items() for m in _DIRECTIVE.finditer(script) if "#" not in m[2]]
    tool = shutil.which("shellcheck")
    if not tool:
        return found, "not checked here: shellcheck is not installed (Debian's shellcheck package)"
    with tempfile.TemporaryDirectory(prefix="runner-shellcheck-") as folder:
        files = {}
        for n, (script, stage) in enumerate(scripts.items()):
            path = f"{folder}/{n}.sh"
            with open(path, "w") as out:  # as the Dockerfile's SHELL runs it: bash -eo pipefail
                out.write("#!/bin/bash\nset -eo pipefail\n" + script + "\n")
            files[path] = (script, stage)
        done = subprocess.run([tool, "--severity=info", f"--exclude={','.join(SHELLCHECK_EXCLUDED)}", "--format=json",
                               *files], capture_output=True, text=True, timeout=600)
    for item in json.loads(done.stdout or "[]"):
        script, stage = files[item["file"]]
        line = script.splitlines()[item["line"] - 3].strip() if item["line"] > 2 else ""
        found.append(_finding("shellcheck", stage, f"SC{item['code']} ({item['level']}): {item['message']} in: {line[:200]}"))
    return found, ""


def _finding(check: str, stage: Stage, message: str) -> Finding:
    return Finding(check, f"{stage.kind} {stage.name}", stage.key, message)


def _search_paths(stage: Stage) -> list[Finding]:
    out = []
    for step in stage.steps:
        if not isinstance(step, Env):
            continue
        for name, value in step.values:
            if name in SEARCH_PATHS and not re.search(rf"\$\{{?{name}\b", value):
                out.append(_finding("search-path", stage, f"ENV {name}={value} replaces the {name} of the image it "
                                                          f"starts from; extend it: {name}=...:${{{name}}}"))
    return out


def arg_read(stage: Stage, name: str) -> bool:
    """Whether a step of the stage reads ARG `name`: a script, or (for the runtime) the base image,
    whose default names the versions it is made of."""
    pattern = re.compile(rf"\$\{{?{name}\b")
    if any(isinstance(s, Run) and pattern.search(s.script) for s in stage.steps):
        return True
    parent = stage.parent
    arg = next((a for a in stage.args if a.name == name), None)
    return bool(parent is not None and parent.kind == StageKind.BASE and arg and arg.value
                and re.search(rf"(?<![\d.]){re.escape(arg.value)}(?!\.?\d)", parent.image or ""))


def _required_args(stage: Stage) -> list[Finding]:
    return [_finding("required-arg", stage, f"ARG {a.name} is marked required but no step of the stage reads it "
                                            f"(its value {a.value!r} is only copied into the image's ENV or labels): "
                                            f"read ${{{a.name}}} where the value is used, or mark it required=False")
            for a in stage.args if a.required and not arg_read(stage, a.name)]


def _urls(stage: Stage) -> list[Finding]:
    out = []
    for step in stage.steps:
        if not isinstance(step, Run):
            continue
        allowed = _requirement_urls(step)
        for m in _URL.finditer(step.script):
            if declared_url_at(step.script, m.start()) or any(step.script.startswith(u, m.start()) for u in allowed):
                continue
            url = step.script[m.start():].split(maxsplit=1)[0].rstrip("\"');")  # _URL matched: never empty
            out.append(_finding("undeclared-url", stage, f"{url} in step {step.title or '(untitled)'!r} is not a "
                                                         "declared source: declare it once, with its version, "
                                                         "as a Download or Git in the recipe"))
    return out


def _installs(stage: Stage) -> list[Finding]:
    if stage.compiles:
        return []
    out = []
    for step in stage.steps:
        if isinstance(step, Run):
            script = step.script.replace(step.requirements.command(), "") if step.requirements else step.script
            out += [_finding("undeclared-install", stage, f"{m[0].strip()!r} in step {step.title or '(untitled)'!r} "
                                                          "installs what no declaration names: declare it as "
                                                          "Requirements and install it with install(...)")
                    for m in _INSTALL.finditer(script)]
    return out


def _requirement_urls(step: Run) -> tuple[str, ...]:
    r = step.requirements
    if r is None:
        return ()
    return tuple(u for u in (r.index_url, *r.extra_index_urls, *r.find_links) if u)
