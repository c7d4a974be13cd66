"""A stand-in base whose build crashed under qemu-user is built once more; any other failure is said at once."""

from __future__ import annotations

import anyio
import pytest

from runner.compose.stages import Stage, StageKind
from runner.rehearse.run import Rehearsal, StandinFailed

CRASH = (1, "", "#5 [3/5] RUN uv pip install torch==2.9.0\n#5 1.062 qemu: uncaught target signal 6 (Aborted) - core dumped\n"
               "#5 ERROR: executor failed running [/bin/sh -c uv pip install torch==2.9.0]: exit code: 134\n")
FAILED = (1, "", "#5 [3/5] RUN uv pip install torch==9\n#5 ERROR: executor failed running: exit code: 1\n")


class Answers:
    """The docker client's `run` as the build would answer it, one answer per call (what the test plays)."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers, self.calls = list(answers), 0

    async def run(self, *argv: str, check: bool = True, timeout: float | None = None) -> tuple[int, str, str]:
        assert argv[0] == "build"
        self.calls += 1
        return self.answers.pop(0)


def _build(tmp_path, *answers) -> tuple[Rehearsal, Answers]:
    rehearsal = Rehearsal.__new__(Rehearsal)  # only the build of a stand-in: no mirror, no daemon
    rehearsal.docker, rehearsal.images = Answers(*answers), []
    stage = Stage(kind=StageKind.BASE, name="base", platform="linux/arm64", image="nvidia/cuda:12.8.1-devel-ubuntu22.04")
    anyio.run(rehearsal._build, "runner-rehearsal/standin:t", tmp_path, stage)
    return rehearsal, rehearsal.docker


def test_a_crash_under_qemu_is_built_once_more(tmp_path):
    rehearsal, docker = _build(tmp_path, CRASH, (0, "", ""))
    assert docker.calls == 2 and rehearsal.images == ["runner-rehearsal/standin:t"]


def test_two_crashes_are_said_as_such(tmp_path):
    with pytest.raises(StandinFailed, match=r"(?s)tried twice: qemu-user crashed the first time\):\n#5 .*signal 6"):
        _build(tmp_path, CRASH, CRASH)


def test_another_failure_is_not_retried(tmp_path):
    with pytest.raises(StandinFailed, match="could not be built:") as failed:
        _build(tmp_path, FAILED, (0, "", ""))
    assert "tried twice" not in str(failed.value)
