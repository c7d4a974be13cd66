"""Each command imports what it uses: listing the matrix loads no engine, no async runtime, no
registry client and no catalog models (a cold `runner matrix` is dominated by imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import contextlib, io, json, sys
from runner.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

NEVER = ("runner.engines", "runner.release", "runner.dagger", "runner.model.catalog", "anyio", "httpx", "dagger")


def _modules(*args: str, cache) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "RUNNER_CACHE_DIR": str(cache)})
    data = json.loads(out.stdout.splitlines()[-1])
    assert data["code"] == 0
    return set(data["modules"])


def test_runner_matrix_imports_no_engine_no_async_runtime_no_catalog_models(tmp_path):
    for run in ("cold", "warm"):  # cold validates (pydantic); warm reads the validated cache
        modules = _modules("matrix", "--format", "tags", cache=tmp_path)
        loaded = sorted(m for m in modules if m.startswith(NEVER))
        assert not loaded, (run, loaded)
    assert "pydantic" not in modules and "yaml" not in modules  # warm: no validation at all


def test_runner_plan_imports_no_engine(tmp_path):
    modules = _modules("plan", "--backend", "corex", "--format", "json", cache=tmp_path)
    assert not sorted(m for m in modules if m.startswith(NEVER))


def test_a_build_without_a_registry_loads_no_registry_client_and_no_catalog_models():
    code = ("import sys, runner.cli.release, runner.engines.docker, runner.release.pipeline, runner.release.publish, "
            "runner.release.report, runner.release.smoke_memory, runner.release.build_cache; "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    modules = set(out.stdout.split())
    assert not sorted(m for m in modules if m.startswith(("httpx", "runner.release.registry", "runner.model.catalog")))
