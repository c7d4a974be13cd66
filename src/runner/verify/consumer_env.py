"""The consumer's own code, installed apart: an environment per pinned requirements file of
pack/_consumer/ (GPUStack with the gpustack-runner and gpustack-runtime it pins; the newest
gpustack-runner for its packaged catalog), made with uv and kept by the file's content under
$RUNNER_CACHE_DIR/consumer, and the harness programs (runner/verify/harness) run in it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runner.model.errors import Failed, UserError

HARNESS = Path(__file__).parent / "harness"
GPUSTACK = "gpustack.txt"  # GPUStack 2.3.0 and everything it pins
UPSTREAM_RUNNER = "gpustack-runner.txt"  # the gpustack-runner whose packaged catalog GPUStack picks from today
CLEAN_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def environment(pack: Path, requirements: str, root: Path | None = None) -> Path:
    """The python of an environment holding exactly `requirements` (made on first use)."""
    from runner.model.files import cache_root, read_text
    from runner.verify.resolver import find_uv

    path = pack / "_consumer" / requirements
    text = read_text(path, "pinned requirements")
    key = hashlib.sha256(f"{sys.version_info[:2]}\0{text}".encode()).hexdigest()[:16]
    folder = (root or cache_root() / "consumer") / f"{path.stem}-{key}"
    python = folder / "bin" / "python"
    if (folder / ".complete").is_file():
        return python
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    uv = find_uv()
    start = time.monotonic()
    for argv in ([uv, "venv", "-q", "--python", sys.executable, str(folder)],
                 [uv, "pip", "install", "-q", "--python", str(python), "--no-deps", "-r", str(path)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise Failed(f"cannot install {path.name} with uv: {done.stderr.strip()[-1500:]}")
    (folder / ".complete").write_text(f"{time.monotonic() - start:.0f} s\n")
    print(f"runner: installed {path.name} in {time.monotonic() - start:.0f} s ({folder})", file=sys.stderr)
    return python


def run(python: Path, program: str, request: dict, timeout: float = 1800) -> dict:
    """Run harness program `program` on `request` in the environment of `python`; its JSON answer."""
    env = {k: os.environ[k] for k in CLEAN_ENV if k in os.environ}  # the consumer sees no runner settings
    try:
        done = subprocess.run([str(python), str(HARNESS / f"{program}.py")], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise Failed(f"the {program} harness ran past {timeout:.0f} s") from None
    if done.returncode != 0:
        raise Failed(f"the {program} harness failed (exit {done.returncode}): {done.stderr.strip()[-3000:]}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise UserError(f"the {program} harness printed no JSON answer", value=done.stdout[-300:]) from None
