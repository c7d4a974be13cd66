"""Caches that cannot vouch for themselves: remembered smoke results, build records and the validated
matrix are read bounded, written atomically through unpredictable names, keyed to runner's own source,
validated on read, and anything odd is a miss that runs (or validates) again."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest

from runner.engines.build_records import BuildRecords
from runner.model.errors import UserError
from runner.model.files import read_cache, runner_fingerprint, write_cache
from runner.release.pipeline import run_checks
from runner.release.smoke_memory import SmokeMemory
from runner.verify import batch
from runner.verify.smoke import Check

CHECKS = [Check("version", "echo 'echo-serve 0.2.9'", expect=r"^echo-serve 0\.3\.0$"), Check("tini", "exit 0")]


class LocalSh:
    """An engine whose 'container' is this machine's sh: the real batch script, framed and parsed."""

    name = "local"

    def __init__(self) -> None:
        self.runs = 0

    async def run_script(self, handle, script: str, timeout: int) -> tuple[int, str]:
        self.runs += 1
        done = await anyio.run_process(["sh", "-s"], input=script.encode(), check=False)
        return done.returncode, done.stdout.decode()


async def _smoke(memory: SmokeMemory, engine: LocalSh, key: str = "k1"):
    """What pipeline.smoke does with the memory, for two checks of one image."""
    found = memory.get(key, CHECKS)
    if found is not None:
        return found
    outcomes = await run_checks(engine, None, CHECKS)
    memory.put(key, CHECKS, outcomes)
    return [c.judge(o.exit_code, o.output, o.seconds, o.problem) for c, o in zip(CHECKS, outcomes)]


def _file(memory: SmokeMemory, key: str = "k1") -> Path:
    return memory.root / f"{key}.json"


POISON = {
    "no results": lambda env: {**env, "data": []},
    "passed as a word": lambda env: {**env, "data": [{**r, "passed": "no"} for r in env["data"]]},
    "a name only": lambda env: {**env, "data": [{"name": "x"}]},
    "another check": lambda env: {**env, "data": [{**env["data"][0], "name": "other"}, env["data"][1]]},
    "one check missing": lambda env: {**env, "data": env["data"][1:]},
    "an exit code as text": lambda env: {**env, "data": [{**r, "exit_code": "0"} for r in env["data"]]},
    "another runner": lambda env: {**env, "runner": "0" * 32},
    "another key": lambda env: {**env, "key": "k2"},
    "not an envelope": lambda env: env["data"],
}


@pytest.mark.parametrize("kind", POISON)
async def test_a_poisoned_smoke_memory_is_discarded_and_the_checks_run_again(tmp_path, kind):
    memory, engine = SmokeMemory(tmp_path), LocalSh()
    first = await _smoke(memory, engine)
    assert [r.passed for r in first] == [False, True] and engine.runs == 1
    envelope = json.loads(_file(memory).read_text())
    assert envelope["runner"] == runner_fingerprint() and "passed" not in envelope["data"][0]
    _file(memory).write_text(json.dumps(POISON[kind](envelope)))
    again = await _smoke(memory, engine)
    assert engine.runs == 2, "the poisoned file was trusted"
    assert [r.passed for r in again] == [False, True] and not any(r.cached for r in again)
    rewritten = json.loads(_file(memory).read_text())  # with the fresh results
    strip = lambda e: [{k: v for k, v in r.items() if k != "seconds"} for r in e["data"]]  # noqa: E731
    assert rewritten["runner"] == envelope["runner"] and strip(rewritten) == strip(envelope)


async def test_remembered_results_are_judged_again_by_the_checks(tmp_path):
    memory, engine = SmokeMemory(tmp_path), LocalSh()
    await _smoke(memory, engine)
    remembered = await _smoke(memory, engine)
    assert engine.runs == 1 and all(r.cached for r in remembered)
    assert [r.passed for r in remembered] == [False, True]
    # a check whose expectation changed judges the same remembered run anew (same command: same run)
    stricter = [CHECKS[0], Check("tini", "exit 0", expect="never printed")]
    assert [r.passed for r in memory.get("k1", stricter)] == [False, False]


@pytest.mark.parametrize("kind", ["link to a device", "huge", "not json", "a folder"])
async def test_odd_cache_files_are_misses_without_hanging(tmp_path, kind):
    memory, engine = SmokeMemory(tmp_path), LocalSh()
    memory.root.mkdir(parents=True)
    path = _file(memory)
    if kind == "link to a device":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with path.open("wb") as f:
            f.truncate(64 * 1024 * 1024)
    elif kind == "not json":
        path.write_bytes(b"\xff\xfe{")
    else:
        path.mkdir()
    with anyio.fail_after(20):
        assert memory.get("k1", CHECKS) is None
        await _smoke(memory, engine)
    assert engine.runs == 1


def test_cache_writes_use_unpredictable_names_and_replace_atomically(tmp_path):
    target = tmp_path / "c" / "k.json"
    planted = tmp_path / "c" / f".k.json.{os.getpid()}.tmp"  # the name an older runner used
    planted.parent.mkdir()
    planted.symlink_to(tmp_path / "victim")
    write_cache(target, "k", {"x": 1})
    assert read_cache(target, "k") == {"x": 1} and not (tmp_path / "victim").exists()
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp") and p != planted] == []
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_build_records_accept_only_an_image_id(tmp_path):
    records = BuildRecords(tmp_path)
    records.put("k", "sha256:" + "a" * 64)
    assert records.get("k") == "sha256:" + "a" * 64
    for poisoned in ({"image_id": ["x"]}, {"image_id": "sha256:../../x"}, [], "sha256:" + "a" * 64):
        write_cache(records.root / "k.json", "k", poisoned)
        assert records.get("k") == ""


def _broken_matrix(workdir: Path) -> Path:
    matrix = workdir / "matrix.yaml"
    text = matrix.read_text()
    assert "vllm: [0.14.1," in text
    matrix.write_text(text.replace("vllm: [0.14.1,", "vllm: [0.14.1.x,", 1))
    return matrix


@pytest.mark.parametrize("kind", ["written by another runner", "fields of the wrong type"])
def test_a_matrix_cache_that_does_not_hold_up_is_validated_again(workdir, kind):
    from runner.compose import project as project_mod

    good = project_mod.load_project(workdir / "matrix.yaml")  # fills the cache for the good matrix
    matrix = _broken_matrix(workdir)
    key, file = project_mod._cache_key(matrix, workdir / "pack")
    # the cache a runner that accepted the broken version would have left: targets under its key
    envelope = {"runner": runner_fingerprint(), "key": key, "data": {
        "namespace": good.namespace, "repository": good.repository, "variants": good.variants,
        "services": good.services, "mirrors": {}, "targets": []}}
    if kind == "written by another runner":
        envelope["runner"] = "older"
    else:
        envelope["data"]["targets"] = [{"backend": 1}]
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(envelope))
    with pytest.raises(UserError, match="0.14.1.x"):
        project_mod.load_project(matrix)


def test_a_symlink_loop_as_the_matrix_is_a_clear_error(tmp_path):
    loop = tmp_path / "matrix.yaml"
    loop.symlink_to(loop)
    out = subprocess.run([os.sys.executable, "-m", "runner", "matrix", "--matrix", str(loop)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "matrix.yaml" in out.stderr, out.stderr
