"""Adding a backend takes a recipe and matrix entries: the parser, plan, CLI and catalog follow."""

from __future__ import annotations

import json
import subprocess
import sys

RECIPE = '''
"""A throwaway accelerator for the test."""
from runner.compose.kit import finish, runtime_builder, vendor_service

SERVICES = ("vllm", "tgi")


def runtime(t, base):
    return runtime_builder(t, base, home="/opt/npx", vendor_home="/opt/npx-sdk-2.1.3").build()


def service(t, runtime):
    return finish(vendor_service(t, runtime, torch="2.5.0"), t)
'''

ENTRY = '''
  npx:
    title: Throwaway NPX
    python: "3.11"
    variants: [big, small]
    platforms: [linux/amd64, linux/arm64]
    base_image: example.com/npx:{version}-{variant}
    releases:
      - version: 2.1.3
        variant: big
        services:
          vllm: [0.9.9]
          tgi: [3.0.1]
'''


def test_a_new_backend_is_planned_named_and_parsed(workdir):
    (workdir / "pack" / "npx").mkdir()
    (workdir / "pack" / "npx" / "recipe.py").write_text(RECIPE)
    (workdir / "matrix.yaml").write_text((workdir / "matrix.yaml").read_text() + ENTRY)

    def run(*args):
        out = subprocess.run([sys.executable, "-m", "runner", *args, *(() if args[0] == "parse" else ("--matrix", str(workdir / "matrix.yaml")))],
                             capture_output=True, text=True, cwd=workdir)
        assert out.returncode == 0, out.stderr
        return out.stdout

    tags = run("matrix", "--backend", "npx", "--format", "tags").split()
    assert tags == ["npx2.1-big-vllm0.9.9", "npx2.1-big-tgi3.0.1"]
    plan = json.loads(run("plan", "--backend", "npx", "--format", "json"))
    assert sorted(s["tag"] for s in plan["stages"] if s["kind"] == "service") == sorted(
        [f"{t}" for t in tags] * 2)
    assert {s["platform"] for s in plan["stages"]} == {"linux/amd64", "linux/arm64"}
    parsed = json.loads(run("parse", "gpustack/runner:npx2.1-big-tgi3.0.1-linux-arm64", "--matrix", str(workdir / "matrix.yaml")))
    assert (parsed["backend"], parsed["backend_variant"], parsed["service"], parsed["platform"]) == ("npx", "big", "tgi", "linux/arm64")
    assert "FROM ${TGI_BASE_IMAGE} AS runtime" in run("dockerfile", "npx2.1-big-tgi3.0.1")
    catalog = json.loads(run("catalog", "--backend", "npx", "--format", "json"))
    assert len(catalog) == 4
