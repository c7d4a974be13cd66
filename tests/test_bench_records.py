"""bench/rehearse_all.py's records: each target-platform's outcome kept in the repository, a later one
replacing the earlier, and the tally adding them up against a matrix's plan."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("rehearse_all", ROOT / "bench" / "rehearse_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image(tag: str, verdict: str, steps: list[tuple[str, str]]) -> dict:
    return {"tag": tag, "platform": "linux/amd64", "verdict": verdict, "seconds": 12.0, "error": "", "smoke": [],
            "steps": [{"stage": "s", "title": f"step {i}", "script": script, "status": status, "urls": [], "output": ""}
                      for i, (script, status) in enumerate(steps)]}


def test_a_record_keeps_each_scripts_best_status_and_the_reason():
    bench = _bench()
    image = _image("cuda12.8-vllm0.14.1", "failed step", [("a", "failed"), ("a", "ran"), ("b", "not run")])
    r = bench.record(image, "abc123", "2026-12-06T20:00:00+00:00")
    assert r["scripts"] == {"a": "ran", "b": "not run"}
    assert r["why"] == "failed step: [s] step 0" and r["commit"] == "abc123"


def test_a_later_record_replaces_the_earlier_and_the_tally_reads_them(tmp_path, capsys):
    bench = _bench()
    file = tmp_path / "rehearsals.json"
    first = _image("cuda12.8-voxbox0.0.21", "failed step", [("x", "failed")])
    bench.keep([bench.record(first, "c1", "2026-12-01T00:00:00+00:00")], file)
    later = _image("cuda12.8-voxbox0.0.21", "passed", [("x", "ran")])
    bench.keep([bench.record(later, "c2", "2026-12-02T00:00:00+00:00")], file)
    kept = json.loads(file.read_text())
    assert list(kept) == ["cuda12.8-voxbox0.0.21 linux/amd64"] and kept["cuda12.8-voxbox0.0.21 linux/amd64"]["commit"] == "c2"
    assert not file.with_suffix(".json.new").exists()
    # an older report recorded late does not replace the later rehearsal's record
    bench.keep([bench.record(first, "c0", "2026-11-01T00:00:00+00:00")], file)
    assert json.loads(file.read_text())["cuda12.8-voxbox0.0.21 linux/amd64"]["commit"] == "c2"
    assert bench.tally(["--matrix", str(ROOT / "tests" / "fixtures" / "matrix-seed.yaml")], file) == 0
    out = capsys.readouterr().out
    assert "cuda12.8-voxbox0.0.21" in out and "passed  [c2, 2026-12-02]" in out
    smoked = dict(later, verdict="not fetchable here", smoke=[{"passed": True}, {"passed": False}])
    assert bench.reason(smoked) == "not fetchable here:  (smoke 1/2)"
    assert "1 recorded in rehearsals.json: " in out and "1 passed" in out


def test_the_committed_records_add_up_over_the_seed_matrix_and_ci_prints_their_coverage(capsys):
    """The whole seed matrix is rehearsed by the bench (hours), not in CI: CI reads the outcomes the bench
    committed (bench/rehearsals.json) against the current plan, where a script changed since it was
    rehearsed counts as never rehearsed, and prints the figures (target-platforms by verdict, distinct
    scripts by best outcome) with the others the tests measure."""
    import re

    from runner.rehearse.steps import STATUS_RANK

    bench = _bench()
    records = json.loads(bench.RECORDS.read_text())
    assert records and all(r["verdict"] and r["commit"] and r["scripts"] for r in records.values())
    assert all(s in STATUS_RANK for r in records.values() for s in r["scripts"].values())
    assert bench.tally(["--matrix", str(ROOT / "tests" / "fixtures" / "matrix-seed.yaml")]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    every, scripts = lines[-2], lines[-1]
    leaves = int(re.match(r"(\d+) target-platforms", every).group(1))
    # each target-platform is counted once, and each distinct script once
    assert sum(int(n) for n in re.findall(r"(\d+) [a-z]", every.split(": ", 1)[1])) == leaves
    total = int(re.search(r"distinct scripts \((\d+)\)", scripts).group(1))
    assert sum(int(n) for n in re.findall(r"(\d+) [a-z]", scripts.split(": ", 1)[1])) == total
    print(f"[rehearsals] seed matrix, from bench/rehearsals.json: {every}")
    print(f"[rehearsals] {scripts}")
