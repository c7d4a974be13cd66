"""All of an image's checks as one POSIX shell script (one container start instead of one per check),
and the parsing of what it prints. Engines only run the script and hand back its output.

Each check runs in its own `sh -c`, under `timeout` when the image has it (else a watchdog), with its
output captured and framed as base64, so no output can break the framing. The script itself always
exits 0: a check killed by a signal is reported as such, not as a failed container.

The image's own processes share the container's output stream (any of them can write to
/proc/1/fd/1), so every line of a frame carries a secret nonce drawn for the run, and lines without it
are ignored (a forged frame, or a line slipped into a real one). The nonce is only in the script, which engines feed to `sh -s` on standard input: not in any
argv, environment or file of the container. The script is one shell function, read whole before any
check starts, so nothing is left on that input for a check to read. A check's own body is its
argument; bodies are never written to files a running check could rewrite. What stays possible: a
process with ptrace rights over the checking shell could read the nonce from its memory, and one
that finds the file a check's output is collected in could change that output before it is sent.

`single` is the same for engines that capture each check's output and exit code themselves (one exec
per check, as Dagger does): nothing is parsed from a shared stream there.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass

START = "@@runner-check"
END = "@@runner-end"
GRACE = 5  # seconds between TERM and KILL when a check overruns
KEEP = 1024 * 1024  # bytes of a check's output sent back (its end): an endless printer cannot flood runner

_PRELUDE = r"""runner_checks() {
d=$(mktemp -d 2>/dev/null) || { d=/tmp/.runner-checks.$$; mkdir -p "$d"; }
to=$(command -v timeout 2>/dev/null || true)
now() { n=$(date +%s%N 2>/dev/null); case "$n" in *[!0-9]*|'') echo "$(date +%s)000000000" ;; *) echo "$n" ;; esac; }
run_check() {
  start=$(now)
  if [ -n "$to" ]; then
    "$to" -k GRACE "$2" sh -c "$3" >"$d/$1.out" 2>&1 </dev/null; code=$?
  else
    sh -c "$3" >"$d/$1.out" 2>&1 </dev/null & pid=$!
    ( sleep "$2"; kill -TERM "$pid" 2>/dev/null; sleep GRACE; kill -KILL "$pid" 2>/dev/null ) >/dev/null 2>&1 & dog=$!
    wait "$pid"; code=$?
    kill "$dog" 2>/dev/null
  fi
  echo "START NONCE $1 $code $start $(now)"
  tail -c KEEP "$d/$1.out" | base64 | while IFS= read -r l; do echo "NONCE $l"; done
  echo "END NONCE"
}
""".replace("GRACE", str(GRACE)).replace("START", START).replace("END", END).replace("KEEP", str(KEEP))

_SINGLE = r"""exec 2>&1 </dev/null
to=$(command -v timeout 2>/dev/null || true)
[ -n "$to" ] && exec "$to" -k GRACE LIMIT sh -c BODY
sh -c BODY & pid=$!
( sleep LIMIT; kill -TERM "$pid" 2>/dev/null; sleep GRACE; kill -KILL "$pid" 2>/dev/null ) >/dev/null 2>&1 & dog=$!
wait "$pid"; code=$?
kill "$dog" 2>/dev/null
exit "$code"
"""


def nonce() -> str:
    """A fresh secret for one run's frames."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Outcome:
    """What one check did: its exit code, output, duration, and why it stopped if not by itself."""

    exit_code: int
    output: str
    seconds: float
    timed_out: bool = False
    signal: str = ""  # e.g. "SIGKILL" when the check was killed by a signal
    ran: bool = True

    @property
    def problem(self) -> str:
        """Why the check did not finish on its own, or '' when it did."""
        if not self.ran:
            return "the check did not run"
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        if self.signal:
            return f"killed by signal {self.signal} (exit code {self.exit_code})"
        return ""


def script(bodies: Sequence[str], timeouts: Sequence[int], secret: str) -> str:
    """One shell script (for `sh -s` on standard input) that runs every check body with its timeout and
    prints results framed with `secret`."""
    lines = [_PRELUDE.replace("NONCE", secret)]
    for i, (body, limit) in enumerate(zip(bodies, timeouts)):
        lines.append(f"run_check {i} {int(limit)} {shlex.quote(body)}")
    lines.append('rm -rf "$d"')
    lines.append("}")
    lines.append("runner_checks")
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def single(body: str, limit: int) -> str:
    """A script that runs one check body with its timeout and exits with the body's exit code (124, or
    137 after the KILL, when it overran); its output and error output both go to standard output."""
    return _SINGLE.replace("GRACE", str(GRACE)).replace("LIMIT", str(int(limit))).replace("BODY", shlex.quote(body))


def parse(output: str, timeouts: Sequence[int], secret: str, failure: str = "") -> list[Outcome]:
    """Outcomes in check order from the script's output; only frames carrying `secret` count. A check
    with no frame (the container died first) is reported with `failure`, what the engine said about the
    run; a check with two frames was answered for by someone else too and fails."""
    found: dict[int, Outcome] = {}
    twice: set[int] = set()
    current: tuple[int, int, float] | None = None
    body: list[str] = []
    opening, closing, line_of = f"{START} {secret} ", f"{END} {secret}", f"{secret} "
    for line in output.splitlines():
        if line.startswith(opening):
            parts = line.split()
            try:
                index, code, start, end = int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5])
            except (IndexError, ValueError):
                current = None
                continue
            current, body = (index, code, max(0, end - start) / 1e9), []
        elif line == closing and current is not None:
            try:
                text = base64.b64decode("".join(body)).decode(errors="replace")
            except (binascii.Error, ValueError):
                text = "(output could not be decoded)"
            index, code, seconds = current
            if index in found:
                twice.add(index)
            found[index] = outcome(code, text, seconds, timeouts[index] if 0 <= index < len(timeouts) else 0)
            current = None
        elif current is not None and line.startswith(line_of):  # a line someone else slipped in does not count
            body.append(line[len(line_of):])
    missing = Outcome(-1, failure.strip()[-600:] or "no result: the container stopped before this check", 0.0, ran=False)
    forged = Outcome(-1, "two results for this check: the check's frame was written twice", 0.0, ran=False)
    return [forged if i in twice else found.get(i, missing) for i in range(len(timeouts))]


def outcome(code: int, text: str, seconds: float, limit: int) -> Outcome:
    """A check's outcome from its exit code, output and duration, against its time limit."""
    # GNU timeout exits 124 (137 after the KILL); the watchdog leaves TERM's 143 or KILL's 137.
    timed_out = limit > 0 and (code == 124 or (code in (137, 143) and seconds >= limit - 1))
    sig = ""
    if not timed_out and 128 < code < 160:
        try:
            sig = signal.Signals(code - 128).name
        except ValueError:
            sig = f"{code - 128}"
    return Outcome(code, text, seconds, timed_out, sig)


def overall_timeout(timeouts: Sequence[int]) -> int:
    """How long an engine should let the whole script run before giving up on the container."""
    return sum(int(t) + GRACE for t in timeouts) + 120
