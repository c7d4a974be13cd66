"""Smoke results remembered on this machine for the Docker engine: one small JSON file per image and
rendered check list (see pipeline.memory_key), under $RUNNER_CACHE_DIR/smoke.

A remembered file vouches for nothing by itself: it holds what each check printed and how it exited,
read back through runner.model.files.read_cache (bounded, this runner's own files only), validated
strictly, matched check by check (name and command) against the checks of this run, and judged again
by those checks. Anything else (an empty list, a missing check, `"passed": "no"`) is a miss: the
checks run again and their fresh results replace the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from runner.model.files import JsonCache
from runner.verify.batch import Outcome
from runner.verify.smoke import Check, CheckResult

MAX_OUTPUT = 256 * 1024  # characters of one check's output worth remembering; a longer run is not remembered


class RememberedRun(BaseModel):
    """One check's run as it is remembered: enough to judge it again."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    command: str
    exit_code: int
    output: str = Field(max_length=MAX_OUTPUT)
    seconds: float = Field(ge=0)


_RUNS = TypeAdapter(list[RememberedRun])


class SmokeMemory:
    """Remembered smoke results keyed by image and rendered checks (same inputs, same result)."""

    def __init__(self, root: Path | None = None, recall: bool = True) -> None:
        self.cache = JsonCache("smoke", root)
        self.root = self.cache.root
        self.recall = recall  # False: run every check (--no-smoke-cache), and remember the fresh results
        self.discarded: list[str] = []  # keys whose files were there but did not hold up

    def get(self, key: str, checks: Sequence[Check]) -> list[CheckResult] | None:
        """The remembered results of exactly these checks, judged again; None when there are none."""
        if not self.recall or not checks:
            return None
        data = self.cache.get(key)
        if data is None:
            return None
        try:
            runs = _RUNS.validate_python(data)
        except ValidationError:
            runs = []
        if [(r.name, r.command) for r in runs] != [(c.name, c.script) for c in checks]:
            self.discarded.append(key)
            return None
        return [CheckResult(**{**vars(c.judge(r.exit_code, r.output, r.seconds)), "cached": True})
                for c, r in zip(checks, runs)]

    def put(self, key: str, checks: Sequence[Check], outcomes: Sequence[Outcome]) -> None:
        """Remember finished runs (never a timeout, a kill or a check that did not run)."""
        if len(checks) != len(outcomes) or any(o.problem or len(o.output) > MAX_OUTPUT for o in outcomes):
            return
        self.cache.put(key, [{"name": c.name, "command": c.script, "exit_code": o.exit_code, "output": o.output,
                              "seconds": max(0.0, float(o.seconds))} for c, o in zip(checks, outcomes)])
