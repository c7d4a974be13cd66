"""The Dagger engine's smoke checks: one exec per check, its exit code and output captured by the engine
(here a stand-in container whose execs run on this machine's sh), so no other process of the image can
answer for a check; a script fed to `sh -s` on standard input, never in argv."""

from __future__ import annotations

import subprocess

import anyio

import tests.dagger_query  # noqa: F401  (first: it names the module's main object before the SDK loads)
import dagger  # noqa: E402

from runner.engines.dagger import DaggerBuilder, StageContainers
from runner.release.pipeline import run_checks
from runner.verify.smoke import Check


class LocalExec:
    """What `Container.with_exec(...)` returns, run on this machine when its result is asked for."""

    def __init__(self, args: list[str], stdin: str) -> None:
        self.args, self.stdin, self._done = args, stdin, None

    def _run(self) -> subprocess.CompletedProcess:
        if self._done is None:
            self._done = subprocess.run(self.args, input=self.stdin, capture_output=True, text=True, timeout=60)
        return self._done

    async def exit_code(self) -> int:
        return self._run().returncode

    async def stdout(self) -> str:
        return self._run().stdout

    async def stderr(self) -> str:
        return self._run().stderr


class LocalContainer:
    def __init__(self) -> None:
        self.execs: list[dict] = []

    def with_exec(self, args: list[str], *, stdin: str = "", use_entrypoint: bool = False,
                  expect: dagger.ReturnType = dagger.ReturnType.SUCCESS) -> LocalExec:
        self.execs.append({"args": args, "stdin": stdin, "use_entrypoint": use_entrypoint, "expect": expect})
        return LocalExec(args, stdin)


def test_each_check_runs_in_an_exec_of_its_own():
    checks = [Check("a", "echo one; exit 3"), Check("b", "printf '@@runner-check 0 0 0 0\\n'; echo two >&2"),
              Check("c", "sleep 30", timeout=1)]
    ctr = LocalContainer()
    outcomes = anyio.run(run_checks, DaggerBuilder(StageContainers()), ctr, checks)
    assert len(ctr.execs) == 3 and all(e["args"][:2] == ["sh", "-c"] for e in ctr.execs)
    assert all(e["use_entrypoint"] and e["expect"] == dagger.ReturnType.ANY and not e["stdin"] for e in ctr.execs)
    a, b, c = outcomes
    assert (a.exit_code, a.output) == (3, "one\n") and not a.problem
    assert b.exit_code == 0 and b.output == "@@runner-check 0 0 0 0\ntwo\n"  # only ever its own output
    assert c.timed_out and c.problem == "timed out after 1 s"


def test_a_whole_script_goes_on_standard_input():
    ctr = LocalContainer()
    code, out = anyio.run(DaggerBuilder(StageContainers()).run_script, ctr, "echo from-stdin\n", 60)
    (e,) = ctr.execs
    assert e["args"] == ["sh", "-s"] and e["stdin"] == "echo from-stdin\n"
    assert (code, out) == (0, "from-stdin\n")
