"""Faults are faults: against a registry stub that drips, floods, hangs, resets, stays overloaded or sends
nonsense, the registry client ends within its time budget with an InfrastructureError (exit code 3 on
the command line, never 2 and never a traceback), reading no more than its size limit."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import anyio
import pytest

from runner.model.errors import InfrastructureError
from runner.release.registry import MAX_BODY, Registry
from tests.conftest import ROOT
from tests.registry_stub import MODES, RegistryStub

TIMEOUT, RETRY = 2.0, 4.0


@pytest.mark.parametrize("mode", MODES)
async def test_a_misbehaving_registry_is_an_infrastructure_error_within_the_budget(mode):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with RegistryStub(mode) as stub:
        start = time.monotonic()
        with anyio.fail_after(60):
            async with Registry(stub.address, "user", "secret", timeout=TIMEOUT, retry_seconds=RETRY) as reg:
                with pytest.raises(InfrastructureError) as caught:
                    await reg.manifest("ns/runner", "cuda12.8-vllm0.14.1")
        took = time.monotonic() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(f"[registry-faults] {mode}: {took:.1f}s, {sum(stub.requests.values())} requests, {stub.sent} bytes sent; "
          f"{caught.value}")
    # one attempt at most past the retry budget, plus the last backoff wait
    assert took < RETRY + TIMEOUT + 9, took
    assert grown < 8 * MAX_BODY, f"memory grew by {grown} bytes"
    if mode in ("flood", "huge"):
        assert "larger than" in str(caught.value) and stub.requests["GET"] == 1  # refused, not retried
    if mode in ("drip", "hang", "reset", "503"):
        assert stub.requests["GET"] >= 2  # retried before giving up


def test_the_command_line_exits_3_with_a_message_for_a_hanging_registry(tmp_path):
    with RegistryStub("hang") as stub:
        env = {**os.environ, "REGISTRY_PASSWORD": "secret", "RUNNER_REGISTRY_TIMEOUT": "1",
               "RUNNER_REGISTRY_RETRY_SECONDS": "3", "RUNNER_CACHE_DIR": str(tmp_path)}
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "runner", "promote", "--registry", stub.address, "--username", "u",
                              "--matrix", str(ROOT / "tests" / "fixtures" / "e2e" / "matrix.yaml")],
                             env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - start
    assert out.returncode == 3, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "infrastructure error" in out.stderr and "attempts" in out.stderr
    assert took < 30, took


def test_malformed_patience_is_a_clear_error(tmp_path):
    env = {**os.environ, "REGISTRY_PASSWORD": "secret", "RUNNER_REGISTRY_TIMEOUT": "-1"}
    out = subprocess.run([sys.executable, "-m", "runner", "promote", "--registry", "127.0.0.1:9", "--username", "u",
                          "--matrix", str(ROOT / "tests" / "fixtures" / "e2e" / "matrix.yaml")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "RUNNER_REGISTRY_TIMEOUT" in out.stderr, out.stderr
