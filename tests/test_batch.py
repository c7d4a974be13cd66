"""The batched check script, run for real by this machine's sh and busybox sh: results in order, a
timeout per check, a check killed by a signal reported as such, output that cannot break the framing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from runner.verify import batch
from runner.verify.smoke import Check


def _run(shell: list[str], bodies: list[str], timeouts: list[int], path: str | None = None) -> list[batch.Outcome]:
    env = {"PATH": path} if path else None
    out = subprocess.run([*shell, "-c", batch.script(bodies, timeouts)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return batch.parse(out.stdout, timeouts)


SHELLS = [["sh"]] + ([["busybox", "sh"]] if shutil.which("busybox") else [])


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_each_check_reports_its_exit_code_output_and_duration(shell):
    bodies = ["echo hello; echo oops >&2; exit 3",
              "printf '@@runner-end\\n@@runner-check 9 0 0 0\\n'; head -c 3000 /dev/zero | tr '\\0' x",
              "sleep 1; echo done"]
    first, framing, slow = _run(shell, bodies, [30, 30, 30])
    assert (first.exit_code, first.output) == (3, "hello\noops\n") and not first.problem
    assert framing.exit_code == 0 and framing.output.startswith("@@runner-end\n@@runner-check 9") and len(framing.output) > 3000
    assert slow.output == "done\n" and 0.9 < slow.seconds < 10


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_check_that_overruns_is_stopped_and_says_so(shell):
    timed, after = _run(shell, ["echo started; sleep 30", "echo next"], [2, 30])
    assert timed.timed_out and timed.problem == "timed out after 2 s" and timed.output.startswith("started\n")
    assert after.output == "next\n"  # the next check still runs


def test_the_watchdog_stops_a_check_where_the_image_has_no_timeout(tmp_path):
    """Images without `timeout`: the script's own watchdog stops the check."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sleep", "base64", "date", "mktemp", "rm", "cat", "kill"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    (timed,) = _run(["sh"], ["sleep 30"], [2], path=str(bin_dir))
    assert timed.timed_out, timed


def test_a_check_killed_by_a_signal_is_reported_as_such():
    killed, segv = _run(["sh"], ["kill -KILL $$", "kill -SEGV $$"], [30, 30])
    assert killed.signal == "SIGKILL" and "killed by signal SIGKILL" in killed.problem
    assert segv.signal == "SIGSEGV" and not segv.timed_out


def test_judging_keeps_command_exit_code_duration_and_the_reason():
    check = Check("ray", "ray --version", expect="ray, version")
    (o,) = _run(["sh"], ["echo 'ray, version 2.49.0'"], [30])
    ok = check.judge(o.exit_code, o.output, o.seconds, o.problem)
    assert ok.passed and ok.command == "ray --version" and ok.as_dict()["seconds"] >= 0
    (o,) = _run(["sh"], ["sleep 20"], [1])
    late = check.judge(o.exit_code, o.output, o.seconds, o.problem)
    assert not late.passed and late.reason == "timed out after 1 s"


def test_checks_missing_from_the_output_did_not_run():
    outcomes = batch.parse("", [30, 30], failure="OCI runtime create failed: no such file")
    assert all(not o.ran and "OCI runtime create failed" in o.output for o in outcomes)
    assert outcomes[0].problem == "the check did not run"
