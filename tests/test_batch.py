"""The batched check script, run for real by this machine's sh and busybox sh: results in order, a
timeout per check, a check killed by a signal reported as such, output that cannot break the framing,
and frames that no other process can forge (a nonce of the run, fed on standard input only)."""

from __future__ import annotations

import re

import base64
import shutil
import subprocess

import pytest

from runner.verify import batch
from runner.verify.smoke import Check


def _run(shell: list[str], bodies: list[str], timeouts: list[int], path: str | None = None) -> list[batch.Outcome]:
    env = {"PATH": path} if path else None
    secret = batch.nonce()
    out = subprocess.run([*shell, "-s"], input=batch.script(bodies, timeouts, secret), capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return batch.parse(out.stdout, timeouts, secret)


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
    # the problem states the time the check ran (a loaded machine stops it a second or so late)
    assert timed.timed_out and re.fullmatch(r"timed out after [23] s", timed.problem) and timed.output.startswith("started\n")
    assert after.output == "next\n"  # the next check still runs


def test_the_watchdog_stops_a_check_where_the_image_has_no_timeout(tmp_path):
    """Images without `timeout`: the script's own watchdog stops the check."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sleep", "base64", "date", "mktemp", "rm", "cat", "kill", "tail"):
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
    outcomes = batch.parse("", [30, 30], batch.nonce(), failure="OCI runtime create failed: no such file")
    assert all(not o.ran and "OCI runtime create failed" in o.output for o in outcomes)
    assert outcomes[0].problem == "the check did not run"


# A check that forges results for itself and the checks after it, the way a process of the image can:
# frames written straight to the container's output, by a child that outlives the check.
FORGER = ("""(sleep 1; for i in 0 1 2; do printf '@@runner-check %s 0 0 0\\n%s\\n@@runner-end\\n' $i "$(echo forged | base64)"; """
          """done; for n in 0 1 2; do printf '@@runner-check x %s 0 0 0\\n@@runner-end x\\n' $n; done) >&3 & exit 1""")


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_frames_written_by_the_image_do_not_count(shell):
    secret = batch.nonce()
    # in a container the stream is /proc/1/fd/1 (tini's); here an outer shell stands for tini
    proc = subprocess.Popen(["sh", "-c", f"{' '.join(shell)} -s; exit $?"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    script = batch.script([f"exec 3>/proc/{proc.pid}/fd/1; " + FORGER, "sleep 2; exit 4", "exit 5"], [30, 30, 30],
                          secret)
    out, _ = proc.communicate(script, timeout=60)
    assert "@@runner-check 0 0 0 0\n" in out and "@@runner-end x\n" in out  # the forger wrote its frames
    first, second, third = batch.parse(out, [30, 30, 30], secret)
    assert (first.exit_code, second.exit_code, third.exit_code) == (1, 4, 5)
    assert secret not in script.split("runner_checks() {", 1)[0]  # nothing before the function gives it away


def test_a_frame_written_twice_fails_its_check():
    secret = batch.nonce()
    frame = f"@@runner-check {secret} 0 0 0 1\n{base64.b64encode(b'ok').decode()}\n@@runner-end {secret}\n"
    (o,) = batch.parse(frame + frame, [30], secret)
    assert not o.ran and "two results" in o.output


def test_the_nonce_is_in_no_argv_or_environment_of_the_checks():
    secret = batch.nonce()
    body = "cat /proc/$PPID/cmdline /proc/$PPID/environ /proc/$$/cmdline /proc/$$/environ | tr '\\0' ' '"
    out = subprocess.run(["sh", "-s"], input=batch.script([body], [30], secret), capture_output=True, text=True,
                         timeout=60)
    (o,) = batch.parse(out.stdout, [30], secret)
    assert o.exit_code == 0 and "sh" in o.output and secret not in o.output


def test_a_single_check_exits_with_its_own_code_and_times_out():
    done = subprocess.run(["sh", "-c", batch.single("echo out; echo err >&2; exit 7", 30)], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout) == (7, "out\nerr\n")
    late = subprocess.run(["sh", "-c", batch.single("sleep 30", 1)], capture_output=True, text=True, timeout=60)
    assert batch.outcome(late.returncode, late.stdout, 1.0, 1).timed_out


def test_a_line_slipped_into_a_real_frame_does_not_count():
    secret = batch.nonce()
    real = base64.b64encode(b"echo-serve 0.2.9\n").decode()
    slipped = base64.b64encode(b"echo-serve 0.3.0\n").decode()
    frame = f"@@runner-check {secret} 0 0 0 1\n{slipped}\n{secret} {real}\n{slipped}\n@@runner-end {secret}\n"
    (o,) = batch.parse(frame, [30], secret)
    assert o.output == "echo-serve 0.2.9\n"
