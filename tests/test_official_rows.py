"""What a row that layers an official image adds, read from its plan: the image's service declared for
the resolver (not installed), vllm-omni where the index has the release for the row's vLLM minor, and
the CuPy mend after Ray's install, rendered as an install the static checks accept."""

from __future__ import annotations

import re

import pytest

from runner.compose.project import load_project
from runner.compose.requirements import installs
from runner.verify.probes import declared
from runner.compose.stages import Run, dependencies_first
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def project():
    return load_project(ROOT / "matrix.yaml")


def steps_of(leaf) -> list[Run]:
    """The leaf's steps that carry requirements, in build order."""
    return [s for stage in dependencies_first(leaf) for s in stage.steps if isinstance(s, Run) and s.requirements]


def _titles(project, tag: str) -> list[str]:
    return [r.title for _, r in installs(project.leaf_stage(tag, "linux/amd64")).steps]


def test_the_official_images_service_is_declared_for_the_resolver_but_not_installed(project):
    leaf = project.leaf_stage("cuda13.0-vllm0.32.0", "linux/amd64")
    (step,) = [s for s in steps_of(leaf) if s.requirements.title == "the official image's vllm 0.32.0"]
    assert [p.requirement for p in step.requirements.packages] == ["vllm==0.32.0"]
    assert "pip install" not in step.script and 'grep -q "^Version: ${VLLM_VERSION}"' in step.script
    # later steps start from it: it comes before Ray's
    titles = [s.requirements.title for s in steps_of(leaf)]
    assert titles.index("the official image's vllm 0.32.0") < next(i for i, t in enumerate(titles) if t.startswith("Ray "))
    # SGLang's own pins need pre-releases uv takes only when named: its image's set is not declared
    assert not [t for t in _titles(project, "cuda13.0-sglang0.5.22") if t.startswith("the official image's")]


@pytest.mark.parametrize("tag, release", [("cuda13.0-vllm0.30.0", "0.30.0"), ("cuda12.9-vllm0.16.0", "0.16.0"),
                                          ("cuda12.9-vllm0.18.1", "0.18.0"), ("cuda13.0-vllm0.32.0", None),
                                          ("cuda13.0-vllm0.31.0", None)])
def test_vllm_omni_is_the_indexs_release_for_the_rows_vllm_minor(project, tag, release):
    leaf = project.leaf_stage(tag, "linux/amd64")
    omni = [r for _, r in installs(leaf).steps if r.title.startswith("vllm-omni")]
    shipped = {c.name: c.version for c in declared(leaf)}
    if release is None:  # no release of vllm-omni for this vLLM minor on the index: the row goes without
        assert not omni and "vllm-omni" not in shipped
        return
    (reqs,) = omni
    assert [p.requirement for p in reqs.packages] == [f"vllm-omni=={release}", "onnxruntime", "sox"]
    assert shipped["vllm-omni"] == release  # its components table and smoke check name it


@pytest.mark.parametrize("tag, major", [("cuda13.0-vllm0.32.0", "13"), ("cuda12.9-vllm0.32.0", "12")])
def test_the_cupy_mend_installs_the_rows_cuda_major_at_the_images_version(project, tag, major):
    leaf = project.leaf_stage(tag, "linux/amd64")
    (step,) = [s for s in steps_of(leaf) if s.requirements.title == "one CuPy, for the row's CUDA release"]
    assert f'uv pip install "cupy-cuda{major}x==${{CUPY_VERSION}}"' in step.script
    # nothing to mend (one CuPy in the image): the step ends before it installs anything
    before, _, after = step.script.partition("exit 0")
    assert "pip show -q cupy-cuda12x" in before and "uv pip uninstall cupy-cuda12x cupy-cuda13x" in after
    assert re.search(r"CUPY_VERSION=\$\(python3 -m pip show cupy-cuda13x", after)
    # the resolver takes any release of it (the version is the image's)
    assert [p.resolve_as for p in step.requirements.packages] == [f"cupy-cuda{major}x"]
    # after Ray's install, before the extras
    titles = [s.requirements.title for s in steps_of(leaf)]
    assert titles.index("one CuPy, for the row's CUDA release") == \
        next(i for i, t in enumerate(titles) if t.startswith("Ray ")) + 1
    # SGLang's image is not vLLM's: no mend
    assert "one CuPy, for the row's CUDA release" not in _titles(project, "cuda13.0-sglang0.5.22")
