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
    # under the image's OpenTelemetry, held (runner.compose.official.IMAGE_HOLDS)
    assert f'uv pip install --constraint /tmp/runner-constraints.txt "cupy-cuda{major}x==${{CUPY_VERSION}}"' in step.script
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


@pytest.mark.parametrize("tag, lmcache, mooncake, omni", [("rocm7.2-vllm0.27.1", "0.5.0", "0.3.11.post1", "d77a35a3"),
                                                          ("rocm7.0-vllm0.16.0", "0.3.14", "0.3.9", "3d9fa8d5"),
                                                          ("rocm7.2-vllm0.32.0", "0.5.0", "0.3.11.post1", None)])
def test_a_layered_rocm_vllm_row_builds_lmcache_mooncake_and_omni_on_the_official_image(project, tag, lmcache, mooncake, omni):
    leaf = project.leaf_stage(tag, "linux/amd64")
    builds = {s.name: s for s in dependencies_first(leaf) if s.name.endswith("-build")}
    assert set(builds) == {"lmcache-build", "mooncake-build", *(("vllm-omni-build",) if omni else ())}
    for stage in builds.values():  # compiled against the official image's torch: its runtime stage is their parent
        assert stage.parent.name == "runtime" and stage.parent.parent.image.startswith("vllm/vllm-openai-rocm:v")
    script = "\n".join(s.script for s in builds["lmcache-build"].steps if isinstance(s, Run))
    assert f'--branch "v{lmcache}"' in script and "CXX=hipcc BUILD_WITH_HIP=1 python3 -m build" in script
    assert f'--branch "v{mooncake}"' in "\n".join(s.script for s in builds["mooncake-build"].steps if isinstance(s, Run))
    # one install of their wheels, after Ray's and before the extras, each wheel's folder mounted for it alone
    titles = [s.requirements.title for s in steps_of(leaf)]
    (i,) = [i for i, t in enumerate(titles) if t.startswith("what the row builds on the official image")]
    assert titles[i - 1].startswith("Ray ") and titles[i + 1] == "audio extras"
    step = steps_of(leaf)[i]
    assert {m.target for m in step.mounts} == {"/mnt/lmcache", "/mnt/mooncake", *(("/mnt/vllm-omni",) if omni else ())}
    assert [p.resolve_as for p in step.requirements.packages][:2] == [f"lmcache=={lmcache}", f"mooncake-transfer-engine=={mooncake}"]
    shipped = {c.name: c.version for c in declared(leaf)}
    assert shipped["lmcache"] == lmcache and shipped["mooncake"] == mooncake and shipped.get("vllm-omni") == omni
    # the rehearsal stands the index's LMCache wheel in for the hipcc compile of a layered row too
    from runner.rehearse.substitutions import compile_substitutions
    (run,) = [s for s in builds["lmcache-build"].steps if isinstance(s, Run)]
    replaced, subs = compile_substitutions(builds["lmcache-build"], run)
    assert [(s.kind, s.by) for s in subs] == [("device compile", f"the published lmcache=={lmcache}")]
    assert "CXX=hipcc" not in replaced and f'--only-binary=:all: "lmcache=={lmcache}" --dest /workspace/lmcache' in replaced


@pytest.mark.parametrize("tag, mooncake, omni", [("cann9.0-910b-vllm0.20.2", "0.3.11", "4a24a517"),
                                                 ("cann8.5-a3-vllm0.16.0", "0.3.8.post1", "3d9fa8d5"),
                                                 ("cann9.0-310p-vllm0.20.2", None, "4a24a517"),
                                                 ("cann9.2-950-vllm0.30.0", "0.3.11", None)])
def test_a_layered_cann_vllm_row_builds_mooncake_and_omni_on_the_vllm_ascend_image(project, tag, mooncake, omni):
    leaf = project.leaf_stage(tag, "linux/arm64")
    builds = {s.name: s for s in dependencies_first(leaf) if s.name.endswith("-build")}
    assert set(builds) == {*(("mooncake-build",) if mooncake else ()), *(("vllm-omni-build",) if omni else ())}
    for stage in builds.values():  # built against the vllm-ascend image's torch and torch-npu
        assert stage.parent.name == "runtime" and stage.parent.parent.image.startswith("quay.io/ascend/vllm-ascend:v")
    if mooncake:
        script = "\n".join(s.script for s in builds["mooncake-build"].steps if isinstance(s, Run))
        assert f'--branch "v{mooncake}"' in script
    if omni:
        assert omni in "\n".join(s.script for s in builds["vllm-omni-build"].steps if isinstance(s, Run))
    titles = [s.requirements.title for s in steps_of(leaf)]
    (i,) = [i for i, t in enumerate(titles) if t.startswith("what the row builds on the official image")]
    assert titles[i - 1].startswith("Ray ")
    packages = {p.name: p for p in steps_of(leaf)[i].requirements.packages}
    # a Mooncake wheel the resolver cannot read for this image is taken as given, with the reason recorded
    unreadable = project.recipes["cann"].module.MOONCAKE_UNREADABLE
    if mooncake:
        assert packages["mooncake-transfer-engine"].resolve_as == ("" if mooncake in unreadable else f"mooncake-transfer-engine=={mooncake}")
    if omni:  # the commit's requirements read from the index's release at or below the row's minor
        minor = project.target(tag).service_version.rsplit(".", 1)[0]
        assert packages["vllm-omni"].resolve_as == f"vllm-omni<={minor}.0" and {"onnxruntime-cann", "sox"} <= set(packages)
    shipped = {c.name: c.version for c in declared(leaf)}
    assert shipped.get("mooncake") == mooncake and shipped.get("vllm-omni") == omni
    # the vllm command sources CANN's environment, as on the compiled rows: after every install (which
    # would rewrite the entry point) and before the patches; found missing by rehearsing the 910B row
    runs = [s for s in leaf.steps if isinstance(s, Run)]
    (w,) = [i for i, s in enumerate(runs) if s.title == "the vllm command sources CANN's environment and preloads jemalloc"]
    assert all(not s.requirements for s in runs[w + 1:]) and runs[w - 1].requirements
    assert 'real="$(command -v vllm)"' in runs[w].script and "set_env.sh" in runs[w].script


def _rehearsed_builds(project, tag: str, platform: str) -> tuple[dict[str, str], list]:
    """The rehearsal's rewrite of a row's build stages: each build stage's script, and what it substituted."""
    from runner.compose.dockerfile import stages_for
    from runner.rehearse.rewrite import Rewriter

    leaf = project.leaf_stage(tag, platform)
    rw = Rewriter(lambda s: "stand-in", "", "http://127.0.0.1:9")
    rw.outputs(leaf)
    new = rw.stage(leaf)
    scripts = {s.name: "\n".join(st.script for st in s.steps if isinstance(st, Run))
               for s in stages_for(new) if s.name.endswith("-build")}
    return scripts, [sub for subs in rw.substitutions.values() for sub in subs]


@pytest.mark.parametrize("tag, platform, mooncake, omni", [
    ("cann9.0-910b-vllm0.20.2", "linux/amd64", "mooncake-transfer-engine==0.3.11", "vllm-omni<=0.20.0"),
    ("rocm7.2-vllm0.27.1", "linux/amd64", "mooncake-transfer-engine==0.3.11.post1", "vllm-omni<=0.27.0"),
    ("cuda12.9-vllm0.14.1", "linux/amd64", None, "vllm-omni==0.14.0")])
def test_a_rehearsal_stands_the_index_release_in_for_mooncake_and_omni_whose_sources_are_on_github_only(
        project, tag, platform, mooncake, omni):
    scripts, subs = _rehearsed_builds(project, tag, platform)
    by = {s.what: s.by for s in subs if s.kind == "source build"}
    # Mooncake at the tag the clone names; vllm-omni (a commit, not a release) as the resolve reads it
    assert by == {**({"mooncake-build's build from its source": f"the published {mooncake}"} if mooncake else {}),
                  "vllm-omni-build's build from its source": f"the published {omni}"}
    for name, wanted, folder in (("mooncake-build", mooncake, "mooncake"), ("vllm-omni-build", omni, "vllm-omni")):
        if wanted:  # the whole build, clone to wheel, is gone; the lines before it (the toolkit's env) stay
            script = scripts[name]
            assert "github.com" not in script and "python3 -m build" not in script and "cmake" not in script
            assert f'--only-binary=:all: "{wanted}" --dest /workspace/{folder}' in script


def test_a_github_only_build_the_index_has_no_release_for_stays_as_written(project):
    from runner.rehearse.substitutions import compile_substitutions

    leaf = project.leaf_stage("rocm7.2-vllm0.27.1", "linux/amd64")
    (stage,) = [s for s in dependencies_first(leaf) if s.name == "mooncake-build"]
    (run,) = [s for s in stage.steps if isinstance(s, Run)]
    ghost = Run(run.script.replace('--branch "v0.3.11.post1"', '--branch "v0.0.1.post99"'), run.caches, run.title)
    script, subs = compile_substitutions(stage, ghost)
    assert subs == [] and script == ghost.script  # the clone runs, and the step ends "not fetchable here"
