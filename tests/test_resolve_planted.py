"""Each build-breaker the recipes once had, planted in a fixture recipe: `runner resolve` reports it
with uv's own explanation (against the real package index), and `runner plan`'s static checks report
the ones no resolver sees. If one of these ever passes, the check that caught it has gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import resolve_fixture
from tests.conftest import ROOT

# service version of the fixture backend -> the planted mistake
CASES = {
    "1.0.1": "FlashInfer pinned in vLLM's own resolve",
    "1.0.2": "openai-whisper built without setuptools < 81",
    "1.0.3": "a flat folder of wheels given as an index",
    "1.0.4": "sglang[all] (no such extra since 0.5.4)",
    "1.0.5": "sgl-kernel 0.3.16.post3 with SGLang 0.5.4.post3",
    "1.0.6": "torch 2.7.1 under vllm-ascend 0.9.1",
    "1.0.7": "torch-npu on amd64 without PyTorch's CPU index",
    "1.0.8": "sglang[srt_npu] from the index",
    "1.0.9": "a pre-release the recipe does not allow (a package published only as betas)",
    "1.0.10": "SGLang 0.5.5's torch 2.8.0 under an image's torch 2.9.1",
    "1.0.11": "SGLang 0.5.8's xgrammar pin on vLLM 0.14.1, each step resolving alone",
}

RECIPE = '''
"""Planted build-breakers, one per service version."""
from runner.compose.kit import OTEL_BETAS, finish, install, service_builder
from runner.compose.requirements import Requirements, pkg
from runner.compose.stages import StageBuilder

SERVICES = ("vllm",)
RADEON = "https://repo.radeon.com/rocm/manylinux/rocm-rel-7.0.2/"


def runtime(t, base):
    return StageBuilder("runtime", "runtime", base).arg("PYTHON_VERSION", t.python).build()


def R(*names, **kw):
    return Requirements(tuple(pkg(n) for n in names), **kw)


STEPS = {
    "1.0.1": [R("vllm==0.14.1", "flashinfer-python==0.6.1")],
    "1.0.2": [R("vox-box==0.0.21")],
    "1.0.3": [R("torch==2.9.1", extra_index_urls=(RADEON,), from_declared=("torch",))],
    "1.0.4": [R("sglang[all]==0.5.5")],
    "1.0.5": [R("sglang==0.5.4.post3", "sgl-kernel==0.3.16.post3")],
    "1.0.6": [R("torch==2.7.1"), R("vllm-ascend==0.9.1")],
    "1.0.7": [R("torch-npu==2.8.0")],
    "1.0.8": [R("torch==2.8.0"), R("sglang[srt_npu]==0.5.8")],
    "1.0.9": [R("opentelemetry-semantic-conventions")],
    "1.0.10": [R("torch==2.9.1"), R("sglang==0.5.5.post3")],
    "1.0.11": [R("vllm==0.14.1", prereleases=OTEL_BETAS), R("xgrammar==0.1.27")],
}


def service(t, runtime):
    b = service_builder(t, runtime)
    for reqs in STEPS[t.service_version]:
        install(b, t, reqs)
    return finish(b, t)
'''

MATRIX = '''
backends:
  plant:
    title: Planted mistakes
    python: "3.11"
    platforms: [linux/amd64]
    base_image: example.com/plant:{version}
    releases:
      - version: 1.0.0
        services:
          vllm: [%s]
''' % ", ".join(CASES)

# what uv (or runner) says about each, in its own words
EXPECTED = {
    "1.0.1": "vllm==0.14.1 depends on flashinfer-python==0.5.3",
    "1.0.2": "pkg_resources",
    "1.0.3": "not from http://127.0.0.1",
    "1.0.4": "does not have an extra named `all`",
    "1.0.5": "depends on sgl-kernel==0.3.16.post4",
    "1.0.6": "torch==2.5.1+cpu",
    "1.0.7": "torch==2.8.0+cpu",
    "1.0.8": "sglang==0.5.8 depends on torch==2.9.1",  # CUDA torch over torch-npu's
    "1.0.9": "pre-releases the recipe does not allow: opentelemetry-semantic-conventions==",
    "1.0.10": "torch==2.8.0",
    "1.0.11": "xgrammar",
}


@pytest.fixture
def planted(tmp_path):
    (tmp_path / "pack" / "plant").mkdir(parents=True)
    (tmp_path / "pack" / "plant" / "recipe.py").write_text(RECIPE)
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    return tmp_path


def test_runner_resolve_reports_every_planted_conflict(planted):
    # the flat folder AMD publishes, served here: as an index it has no project pages
    flat = planted / "radeon"
    resolve_fixture.stub_wheel(flat, "torch", "2.9.1+rocm7.0.2")
    served = resolve_fixture.Served(flat, {})
    env = {**os.environ, "RUNNER_CACHE_DIR": str(planted / "cache"),
           "RUNNER_MIRRORS": f"https://repo.radeon.com/rocm/manylinux/rocm-rel-7.0.2/=http://127.0.0.1:{served.port}/"}
    try:
        out = subprocess.run([sys.executable, "-m", "runner", "resolve", "--matrix", str(planted / "matrix.yaml"),
                              "--format", "json"], capture_output=True, text=True, env=env, cwd=planted, timeout=900)
    finally:
        served.close()
    assert out.returncode == 2, out.stderr[-2000:]
    steps = json.loads(out.stdout)["steps"]
    for version, words in EXPECTED.items():
        found = [s for s in steps if s["tag"].endswith(f"vllm{version}") and s["status"] == "conflict"]
        assert found, f"{CASES[version]}: not reported ({[s['status'] for s in steps if s['tag'].endswith(version)]})"
        assert any(words in s["message"] for s in found), (CASES[version], found[0]["message"][-800:])
    assert "10 install steps do not resolve" in out.stderr
    # only the whole image as one set sees the last: each of its steps resolves alone
    last = [s for s in steps if s["tag"].endswith("vllm1.0.11")]
    assert [s["status"] for s in last if s["step"]] == ["resolved", "resolved"]
    (whole,) = [s for s in last if s["step"] == 0]
    assert whole["status"] == "conflict" and "vllm==0.14.1 depends on xgrammar" in whole["message"]
    assert any(n.startswith("between steps: 1 (") and "; 2 (" in n for n in whole["notes"]), whole["notes"]
    assert "images do not resolve as one set" in out.stderr


STATIC = '''
"""Planted mistakes only static checks see."""
from runner.compose.kit import finish, service_builder
from runner.compose.stages import StageBuilder

SERVICES = ("vllm",)


def runtime(t, base):
    b = StageBuilder("runtime", "runtime", base).arg("PYTHON_VERSION", t.python).arg("PLANT_VERSION", "9.9")
    b.run("curl -fsSL https://sh.rustup.rs | sh -s -- -y", title="a download no source declares")
    b.run("uv pip install maturin", title="an install no declaration names")
    return b.env(PATH="/usr/local/plant/bin:/usr/bin:/bin").build()


def service(t, runtime):
    return finish(service_builder(t, runtime), t)
'''


def test_runner_plan_reports_what_no_resolver_sees(planted):
    (planted / "pack" / "plant" / "recipe.py").write_text(STATIC)
    out = subprocess.run([sys.executable, "-m", "runner", "plan", "--matrix", str(planted / "matrix.yaml")],
                         capture_output=True, text=True, cwd=planted, env={**os.environ, "RUNNER_NO_CACHE": "1"})
    assert out.returncode == 2
    assert "search-path: stage runtime runtime" in out.stderr and "replaces the PATH" in out.stderr
    assert "undeclared-url" in out.stderr and "https://sh.rustup.rs" in out.stderr
    assert "required-arg" in out.stderr and "ARG PLANT_VERSION" in out.stderr
    assert "undeclared-install" in out.stderr and "'uv pip install maturin'" in out.stderr
    # the service's own version ARG is only copied into ENV in this recipe, too
    assert "ARG VLLM_VERSION" in out.stderr


def test_a_branch_needs_a_reason_and_downloads_carry_their_version():
    from runner.compose.sources import Download, Git

    with pytest.raises(ValueError, match="neither a release tag nor a commit"):
        Git("fast-hadamard-transform", "https://github.com/example/fast-hadamard-transform.git", "rocm")
    with pytest.raises(ValueError, match="must carry"):
        Download("rustup", "https://sh.rustup.rs", "1.28.2")


def test_mindie_downloads_name_release_candidates_as_the_host_does(project):
    """The download host spells release candidates RC1, the matrix rc1: the URL must use the host's."""
    cann = project.recipes["cann"].module
    for t in project.targets:
        if t.backend == "cann" and t.service == "mindie":
            text = "\n".join(s.script for st in project.leaf_stage(t.tag).chain() for s in st.steps if hasattr(s, "script"))
            version = t.service_version
            if "rc" in version:
                assert version.replace("rc", "RC") in text and f"Ascend-mindie_{version}_" not in text, t.tag
    assert cann  # the recipe module loaded


def test_torch_stages_pin_their_companions(project):
    """torchvision and torchaudio are pinned with torch, so a resolve never pairs them with another torch."""
    from runner.compose.plan import make_plan
    from runner.verify.resolve import steps_of

    plan = make_plan(project.targets, project.recipes)
    for leaf in plan.leaves:
        for step in steps_of(leaf.stage):
            names = {p.name: p for p in step.requirements.packages}
            if "torch" in names and names["torch"].spec.startswith("=="):
                for companion in ("torchvision", "torchaudio"):
                    if companion in names:
                        assert names[companion].spec.startswith("=="), (leaf.target.tag, step.title, companion)


def test_recipe_text_shows_no_free_url():
    """Every URL in pack/*/recipe.py is in a declaration (Download, Git, an index constant), not inline
    in a script; the static check proves it on the rendered steps, this keeps the source honest too."""
    for recipe in sorted((ROOT / "pack").glob("*/recipe.py")):
        for n, line in enumerate(recipe.read_text().splitlines(), 1):
            if "curl " in line and "://" in line:
                pytest.fail(f"{recipe}:{n}: inline download {textwrap.shorten(line.strip(), 100)}")
