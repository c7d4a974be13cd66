"""All of an image's checks as one POSIX shell script (one container start instead of one per check),
and the parsing of what it prints. Engines only run the script and hand back its output.

Each check runs in its own `sh`, under `timeout` when the image has it (else a watchdog), with its
output captured and framed as base64, so no output can break the framing. The script itself always
exits 0: a check killed by a signal is reported as such, not as a failed container.
"""

from __future__ import annotations

import base64
import binascii
import signal
from collections.abc import Sequence
from dataclasses import dataclass

START = "@@runner-check"
END = "@@runner-end"
GRACE = 5  # seconds between TERM and KILL when a check overruns

_PRELUDE = r"""d=$(mktemp -d 2>/dev/null) || { d=/tmp/.runner-checks.$$; mkdir -p "$d"; }
to=$(command -v timeout 2>/dev/null || true)
now() { n=$(date +%s%N 2>/dev/null); case "$n" in *[!0-9]*|'') echo "$(date +%s)000000000" ;; *) echo "$n" ;; esac; }
run_check() {
  start=$(now)
  if [ -n "$to" ]; then
    "$to" -k GRACE "$2" sh "$d/$1.sh" >"$d/$1.out" 2>&1 </dev/null; code=$?
  else
    sh "$d/$1.sh" >"$d/$1.out" 2>&1 </dev/null & pid=$!
    ( sleep "$2"; kill -TERM "$pid" 2>/dev/null; sleep GRACE; kill -KILL "$pid" 2>/dev/null ) >/dev/null 2>&1 & dog=$!
    wait "$pid"; code=$?
    kill "$dog" 2>/dev/null
  fi
  echo "START $1 $code $start $(now)"
  base64 <"$d/$1.out"
  echo "END"
}
""".replace("GRACE", str(GRACE)).replace("START", START).replace("END", END)


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


def script(bodies: Sequence[str], timeouts: Sequence[int]) -> str:
    """One shell script that runs every check body with its timeout and prints framed results."""
    lines = [_PRELUDE]
    for i, (body, limit) in enumerate(zip(bodies, timeouts)):
        encoded = base64.b64encode(body.encode()).decode()
        lines.append(f"printf %s '{encoded}' | base64 -d >\"$d/{i}.sh\"")
        lines.append(f"run_check {i} {int(limit)}")
    lines.append('rm -rf "$d"')
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def parse(output: str, timeouts: Sequence[int], failure: str = "") -> list[Outcome]:
    """Outcomes in check order from the script's output; a check with no frame (the container died
    first) is reported with `failure`, what the engine said about the run."""
    found: dict[int, Outcome] = {}
    current: tuple[int, int, float] | None = None
    body: list[str] = []
    for line in output.splitlines():
        if line.startswith(START + " "):
            parts = line.split()
            try:
                index, code, start, end = int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])
            except (IndexError, ValueError):
                current = None
                continue
            current, body = (index, code, max(0, end - start) / 1e9), []
        elif line == END and current is not None:
            try:
                text = base64.b64decode("".join(body)).decode(errors="replace")
            except (binascii.Error, ValueError):
                text = "(output could not be decoded)"
            index, code, seconds = current
            found[index] = _outcome(code, text, seconds, timeouts[index] if index < len(timeouts) else 0)
            current = None
        elif current is not None:
            body.append(line)
    missing = Outcome(-1, failure.strip()[-600:] or "no result: the container stopped before this check", 0.0, ran=False)
    return [found.get(i, missing) for i in range(len(timeouts))]


def _outcome(code: int, text: str, seconds: float, limit: int) -> Outcome:
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
