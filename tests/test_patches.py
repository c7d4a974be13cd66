"""Patches proven against the source they patch: `runner plan` applies every patch under pack/ to the
real source (the release's sdist, through the source mirror) of every version the matrix builds with
it, and fails, naming the file, the version and patch's own output, when one no longer applies."""

from __future__ import annotations

import json
import subprocess
import sys

from runner.compose.plan import make_plan
from runner.ui.selection import selected, selection_of
from runner.verify.patches import PatchChecker, PatchSet, patch_sets
from tests.conftest import ROOT

PATCH = """--- a/vllm/utils/network_utils.py
+++ b/vllm/utils/network_utils.py
@@ -1,3 +1,4 @@
{context}
+# planted
"""


def plan(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", "plan", "--format", "json", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=1200)


def test_the_real_vllm_patches_apply_to_every_vllm_release_the_matrix_patches(project):
    done = plan("--backend", "cuda", "--service", "vllm")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    checks = json.loads(done.stdout)["patches"]
    # every CUDA vLLM version whose folder (0.10.2..0.11.0, 0.11.2..0.14.1) holds a patch, checked for real
    wanted = {t.service_version for t in selected(project, selection_of("cuda", "", "", "vllm", "", "", True))
              if (0, 10, 2) <= tuple(map(int, t.service_version.split(".")[:3])) <= (0, 14, 1)
              and t.status != "deprecated"}  # what `runner plan` selects by default
    assert {c["version"] for c in checks} == wanted and len(wanted) >= 5
    assert all(c["status"] == "applies" and c["patches"] == ["001-dp-port-cursor.patch"] for c in checks), checks


def test_a_patch_that_no_longer_applies_fails_runner_plan(workdir):
    folder = workdir / "pack" / "_patches" / "vllm" / "0.14.1"
    folder.mkdir()
    (folder / "002-planted.patch").write_text(PATCH.format(context=" this line is in no release\n two\n three"))
    done = plan("--matrix", str(workdir / "matrix.yaml"), "--backend", "cuda", "--service", "vllm",
                "--service-version", "0.14.1", "--platform", "linux/amd64", cwd=workdir)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2
    assert f"{folder / '002-planted.patch'}: the patch does not apply to vllm 0.14.1" in done.stderr
    assert "Hunk #1 FAILED" in done.stderr  # patch's own words
    failed = [c for c in json.loads(done.stdout)["patches"] if c["status"] == "fails"]
    assert [c["version"] for c in failed] == ["0.14.1"]


def test_a_patch_already_upstream_fails_too(project, tmp_path):
    sets = patch_sets(make_plan([project.target("cuda12.8-vllm0.14.1")], project.recipes).stages)
    (real,) = sets
    twice = PatchSet(real.service, real.version, (*real.patches, ("002-again.patch", real.patches[0][1])),
                     real.installed)
    result = PatchChecker(cache=tmp_path).check(twice)
    assert result.status == "fails" and result.failed == "002-again.patch"
    assert "previously applied" in result.output


def test_a_version_whose_source_cannot_be_had_is_not_checked_with_the_reason(tmp_path):
    checker = PatchChecker(cache=tmp_path)
    absent = checker.check(PatchSet("vllm", "0.0.0.999", (("x.patch", PATCH),), "vllm"))
    assert absent.status == "not-checked" and "no sdist of vllm 0.0.0.999" in absent.output
    assert str(absent).startswith("not checked here: x.patch on vllm 0.0.0.999")
    unknown = checker.check(PatchSet("tgi", "1.0", (("x.patch", PATCH),)))
    assert unknown.status == "not-checked" and "no repository of tgi" in unknown.output
