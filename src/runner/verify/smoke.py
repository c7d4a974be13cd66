"""Smoke specifications: what proves an image works, kept as data beside the recipes.

pack/_smoke/common.yaml applies to every image, pack/_smoke/<service>.yaml to each service, and
pack/<backend>/smoke.yaml adds a backend's own checks. `${name}` in a spec is filled per target from
its fields (service_version, python, backend, ...) and the environment the plan gives the final stage;
anything else is left for the shell.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.model.errors import UserError
from runner.compose.stages import Stage
from runner.model.targets import Target
from runner.model.marked_yaml import load_model

EXCERPT = 6000  # characters of output kept per check in the report (its end: probes print summaries last)
DEFAULT_TIMEOUT = 300  # seconds a check may run unless its spec says otherwise


class CheckSpec(BaseModel):
    """One check: a shell script (`run`) or a named probe (`probe`, see runner.verify.probes) run in the
    image; it passes when it exits as expected and its output matches `expect` (a regular expression)
    and `version_in` (a version range), where given."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    run: str | None = None
    probe: str | None = Field(None, description="a probe of runner.verify.probes, fed what runner knows of the target")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="extra input for the probe")
    expect: str | None = None
    version_in: str | None = None
    exit: int = 0
    services: list[str] | None = None
    platforms: list[str] | None = None
    # a check of a value the recipe pins (torch's version) runs on the images whose plan sets it: a row
    # that layers an official image keeps that image's own (runner.compose.official)
    needs_env: list[str] | None = Field(None, description="runs only on images whose plan sets each of these")
    timeout: int = Field(DEFAULT_TIMEOUT, ge=1, le=7200, description="seconds before the check is stopped")

    @model_validator(mode="after")
    def _one_way_to_run(self) -> CheckSpec:
        from runner.verify import probes

        if (self.run is None) == (self.probe is None):
            raise ValueError("a check has either `run` (a shell script) or `probe` (a probe's name)")
        if self.probe is not None and self.probe not in probes.names():
            raise ValueError(f"unknown probe {self.probe!r} (allowed: {', '.join(probes.names())})")
        return self

    @field_validator("expect")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            compile_pattern(re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "0", v))  # placeholders filled later
        return v

    @field_validator("version_in")
    @classmethod
    def _range(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                SpecifierSet(v)
            except InvalidSpecifier:
                raise ValueError(f"not a version range: {v!r} (allowed: PEP 440 ranges such as >=2.47,<2.49)") from None
        return v


class SmokeSpec(BaseModel):
    """A smoke file: checks, and environment variables (names or globs) that must hold the plan's values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: list[CheckSpec] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """A check made concrete for one target and platform."""

    name: str
    script: str
    expect: str | None = None
    version_in: str | None = None
    exit: int = 0
    timeout: int = DEFAULT_TIMEOUT
    # (distribution, PEP 440 specifier): versions a probe reports as `component-version DIST FOUND`
    # lines, compared here as versions (2.47.1 is not in ==2.4.*, 2.10 is not in ==2.1.*)
    versions: tuple[tuple[str, str], ...] = ()

    def judge(self, exit_code: int, output: str, seconds: float = 0.0, problem: str = "") -> CheckResult:
        """Pass or fail a run of this check from its exit code and output; `problem` says why the run
        stopped early (timed out, killed by a signal, never ran), which fails the check."""
        if problem:
            return CheckResult(self.name, False, exit_code, problem, output[-EXCERPT:], seconds, self.script)
        problems = []
        if exit_code != self.exit:
            problems.append(f"exit code {exit_code}, expected {self.exit}")
        if self.expect is not None and not compile_pattern(self.expect).search(output):
            problems.append(f"output does not match {self.expect!r}")
        if self.version_in is not None:
            try:
                if Version(output.strip().splitlines()[-1]) not in SpecifierSet(self.version_in):
                    problems.append(f"version not in {self.version_in}")
            except (InvalidVersion, IndexError):
                problems.append(f"no version in the output (expected one in {self.version_in})")
        problems += version_problems(self.versions, output)
        return CheckResult(self.name, not problems, exit_code, "; ".join(problems), output[-EXCERPT:], seconds,
                           self.script)

    def skip(self, reason: str) -> CheckResult:
        """A check that could not apply here (say, a device check without the device): not a failure."""
        return CheckResult(self.name, True, 0, reason, "", 0.0, self.script, skipped=True)


@dataclass(frozen=True)
class CheckResult:
    """One check's result, as the report keeps it: command, exit code, duration and an excerpt."""

    name: str
    passed: bool
    exit_code: int
    reason: str
    excerpt: str
    seconds: float = 0.0
    command: str = ""
    skipped: bool = False
    cached: bool = False  # remembered from an earlier run on the same image and check

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "exit_code": self.exit_code, "reason": self.reason,
                "excerpt": self.excerpt, "seconds": round(self.seconds, 3), "command": self.command,
                "skipped": self.skipped, "cached": self.cached}


def version_problems(wanted: Sequence[tuple[str, str]], output: str) -> list[str]:
    """Each reported distribution version (`component-version DIST FOUND`) outside its specifier."""
    found = dict(line.split(" ", 2)[1:3] for line in output.splitlines()
                 if line.startswith("component-version ") and line.count(" ") == 2)
    problems = []
    for dist, spec in wanted:
        if dist not in found:
            continue  # not installed, or the probe stopped: it says so itself
        try:
            ok = SpecifierSet(spec).contains(found[dist], prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{dist} is {found[dist]}, not {spec}")
    return problems


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """An `expect` pattern compiled by RE2 (linear time in the output, multi-line: ^ and $ match at
    each line); a pattern RE2 refuses (a backreference, a lookaround, a syntax error) is a ValueError."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the error goes into our message, not onto stderr
    try:
        return re2.compile(f"(?m){pattern}", options)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"expect: not a pattern RE2 accepts: {pattern!r}: {reason} (allowed: RE2 syntax, "
                         "no backreferences or lookarounds)") from None


@lru_cache(maxsize=256)
def load_spec(path: Path) -> SmokeSpec:
    """Read and validate one smoke file (errors name the file and line)."""
    return load_model(path, SmokeSpec)


def spec_files(pack: Path, t: Target) -> list[Path]:
    """The smoke files that apply to a target, general first."""
    files = [pack / "_smoke" / "common.yaml", pack / "_smoke" / f"{t.service}.yaml", pack / t.backend / "smoke.yaml"]
    return [f for f in files if f.is_file()]


def checks_for(pack: Path, t: Target, leaf: Stage) -> list[Check]:
    """Concrete checks for one target on its leaf stage's platform."""
    from runner.verify import probes

    env = leaf.env()
    values = {
        "service": t.service, "SERVICE": t.service.upper(), "service_version": t.service_version,
        "python": t.python, "backend": t.backend, "BACKEND": t.backend.upper(), "variant": t.variant,
        "backend_version": t.backend_version, "original_backend_version": t.original_backend_version,
        "tag": t.tag, "platform": leaf.platform, **env,
    }
    fill = lambda text: re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: values.get(m[1], m[0]), text)  # noqa: E731
    checks: list[Check] = []
    wanted_env: list[str] = []
    for path in spec_files(pack, t):
        spec = load_spec(path)
        for c in spec.checks:
            if (c.services and t.service not in c.services) or (c.platforms and leaf.platform not in c.platforms):
                continue
            if c.needs_env and not all(fill(name) in env for name in c.needs_env):
                continue
            # a value is matched as written (a version's dots and a local tag's + are not operators)
            expect = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                            lambda m: re.escape(values[m[1]]) if m[1] in values else m[0], c.expect) if c.expect else None
            script = fill(c.run) if c.run is not None else probes.script(c.probe, probes.input_for(c.probe, t, leaf, c.with_, pack))
            expect = expect and re.sub(r"(?<=\d)\.(?=\d)", r"\\.", expect)  # 2.1 in a spec means 2\.1
            try:
                expect and compile_pattern(expect)
            except ValueError as e:
                raise UserError(f"{path}: check {c.name!r} for {t.tag}: {e}") from None
            versions = probes.versions_for(c.probe, leaf) if c.probe is not None else ()
            checks.append(Check(c.name, script, expect, c.version_in, c.exit, c.timeout, versions))
        wanted_env += [fill(e) for e in spec.env]
    names = sorted({k for pattern in wanted_env for k in env if fnmatch.fnmatchcase(k, pattern)})
    missing = [p for p in wanted_env if "*" not in p and p not in env]
    if missing:
        raise UserError(f"{t.tag}: the smoke spec wants environment the plan does not set", value=missing[0],
                        hint=f"set it in pack/{t.backend}/recipe.py or drop it from the smoke spec")
    if names:
        script = "\n".join(f'[ "${{{k}-<unset>}}" = {_sh(env[k])} ] || {{ echo "{k}=${{{k}-<unset>}}, expected {env[k]}"; exit 1; }}'
                           for k in names)
        checks.append(Check("environment", script))
    return checks


def _sh(value: str) -> str:
    import shlex

    return shlex.quote(value)
