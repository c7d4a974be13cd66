"""The rehearsal's rewrite of the release's stages, without a daemon: the declared device compiles of the
real recipes are found and replaced by their published artifacts, every script keeps its own text inside
the wrapper, base stages become what the rehearsal chose, and BuildKit's progress is read per step."""

from __future__ import annotations

import shutil

from runner.compose.project import load_project
from runner.compose.stages import Run
from runner.rehearse import steps
from runner.rehearse.rewrite import NOT_FETCHABLE, Rewriter, steps_in_order
from runner.rehearse.substitutions import COMPILE_MARK, NOT_RUNNABLE, OVERRIDE_MARK
from tests.conftest import ROOT


def _rewritten(tag: str, platform: str = "linux/amd64", base: str = "runner-rehearsal/standin:test"):
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage(tag, platform)
    rw = Rewriter(lambda s: base, "3.11", "http://127.0.0.1:9")
    return leaf, rw.stage(leaf), rw


def test_device_compiles_of_the_real_recipes_are_replaced_by_their_published_artifacts():
    for tag in ("cuda12.8-vllm0.14.1", "rocm7.0-vllm0.14.1"):
        leaf, new, rw = _rewritten(tag)
        subs = {s.what: s for ss in rw.substitutions.values() for s in ss}
        assert "vllm-build's compile" in subs and "lmcache-build's compile" in subs, (tag, list(subs))
        scripts = [st.script for s, i, _ in steps_in_order(new) for st in [s.steps[i]] if isinstance(st, Run)]
        vllm = next(s for s in scripts if "vllm-project/vllm.git" in s and COMPILE_MARK in s)
        assert '--only-binary=:all: "vllm==${VLLM_VERSION}" --dest /workspace/vllm' in vllm
        assert "python3 -m build --wheel --no-isolation --outdir /workspace/vllm" not in vllm
        assert "use_existing_torch.py" in vllm or "rocm-build.txt" in vllm  # the rest of the step runs as written


def test_every_script_runs_as_written_inside_the_wrapper_but_the_declared_substitutions_and_bases_are_replaced():
    leaf, new, rw = _rewritten("cann8.5-910b-vllm0.14.1", base="quay.io/ascend/cann:pulled-here")
    assert new.chain()[0].image == "quay.io/ascend/cann:pulled-here"
    originals = [st.script for s, i, _ in steps_in_order(leaf) for st in [s.steps[i]] if isinstance(st, Run)]
    wrapped = [(s.name, st.script) for s, i, _ in steps_in_order(new) for st in [s.steps[i]] if isinstance(st, Run)]
    assert len(originals) == len(wrapped)
    substituted, device_only = [], []
    for old, (stage, script) in zip(originals, wrapped):
        assert NOT_FETCHABLE in script
        if COMPILE_MARK in script:  # a declared substitution: its lines before the build still run as written
            substituted.append(stage)
            assert old.split("git clone")[0] in script
        elif NOT_RUNNABLE in script:  # a declared compile with no artifact: every other line as written
            device_only.append(stage)
            assert [ln for ln in old.splitlines() if ln not in script] == [
                ln for ln in old.splitlines() if ln.startswith("uv pip install") and ln.endswith("/tmp/vllm-ascend")]
        else:  # as written (after the CPU index's override, where the step names that index)
            assert old in script and (OVERRIDE_MARK in script) == ("download.pytorch.org/whl/cpu" in old)
    # the builds whose sources are on GitHub only, which the index has releases of; nothing else
    assert substituted == ["mooncake-build", "vllm-omni-build"] and device_only == ["vllm"]
    runtime = next(s for s in new.chain() if s.kind == "runtime")
    assert dict((a.name, a.value) for a in runtime.args)["PYTHON_VERSION"] == "3.11"


def test_progress_is_read_per_step():
    progress = "\n".join([
        "#5 [runtime 2/4] RUN --mount=type=cache bash -c x", "#5 0.1 hello", "#5 DONE 0.2s",
        "#6 [runtime 3/4] RUN bash -c y", f"#6 0.3 {NOT_FETCHABLE} https://example.invalid/a.tgz", "#6 DONE 0.4s",
        "#7 [vllm 2/3] RUN bash -c z", "#7 0.5 boom", "#7 ERROR: executor failed running",
    ])
    expected = [("runtime", "a", False, "a"), ("runtime", "b", False, "b"), ("vllm", "c", False, "c"),
                ("vllm", "d", False, "d")]
    got = [(r.status, r.urls) for r in steps.read(progress, expected)]
    assert got == [("ran", []), ("not fetchable here", ["https://example.invalid/a.tgz"]), ("failed", []), ("not run", [])]
    failed = steps.read(progress, expected)[2]
    assert "boom" in failed.output
    # BuildKit's error quotes the whole script: shortened, so the step's own last lines stay in the report
    script = "x" * 5000
    quoted = progress.replace("#7 ERROR: executor failed running",
                              f"#7 ERROR: executor failed running [/bin/bash -c {script}]: exit code: 2")
    failed = steps.read(quoted, expected)[2]
    assert failed.output.endswith("executor failed running [...]: exit code: 2") and len(failed.output) < 80, \
        failed.output[-200:]
    assert "boom" in failed.as_dict()["output"]
    # a URL the step's own source names (vLLM's rocm-build.txt: PyTorch's ROCm index) on a host that does not
    # resolve here is not fetchable here, named as uv names it; a resolve that fails otherwise stays failed
    uv = ["error: Request failed after 3 retries", "  Caused by: Failed to fetch: `https://download.pytorch.org/whl/rocm6.4/jinja2/`",
          "  Caused by: dns error", "  Caused by: failed to lookup address information: Name or service not known"]
    unreachable = progress.replace("#7 0.5 boom", "\n".join(f"#7 0.5 {line}" for line in uv))
    step = steps.read(unreachable, expected)[2]
    assert (step.status, step.urls) == ("not fetchable here", ["https://download.pytorch.org/whl/rocm6.4/jinja2/"])
    unsolvable = progress.replace("#7 0.5 boom", "#7 0.5 Because torch-npu==2.6.0 depends on torch==2.6.0+cpu ... unsatisfiable")
    assert steps.read(unsolvable, expected)[2].status == "failed"
    # the source's files whose indexes a step pointed at the package index, as it said (the report keeps
    # those substitutions only)
    from runner.rehearse.substitutions import ANSWERED_IN
    answered = progress.replace("#5 0.1 hello", f"#5 0.1 {ANSWERED_IN} requirements/rocm-build.txt")
    assert steps.read(answered, expected)[0].answered_in == ["requirements/rocm-build.txt"]
    assert steps.read(progress, expected)[0].answered_in == []


def test_a_step_stopped_on_a_folder_the_stand_in_could_not_carry_is_not_fetchable_here():
    """rocm7.2-vllm0.27.1's runtime installs amd_smi's Python sources from ROCm's folder, which the ROCm 7.2
    stand-in could not carry (the index has no amdsmi of that release): the step's own words name the
    folder, so it is not fetchable here, with why; a step that fails on anything else stays failed."""
    expected = [("runtime", "amd_smi Python bindings from ROCm", False, "x"), ("runtime", "after", False, "y")]
    said = ["Using Python 3.11.2 environment at: /usr",
            "error: /opt/rocm/share/amd_smi does not appear to be a Python project, as neither `pyproject.toml` "
            "nor `setup.py` are present in the directory"]
    log = "\n".join(["#5 [runtime 6/9] RUN bash -c x", *(f"#5 0.5 {line}" for line in said),
                     "#5 ERROR: executor failed running [/bin/bash -c x]: exit code: 2"])
    absent = {"/opt/rocm/share/amd_smi": "the index has no sdist of amdsmi 7.2.0"}
    step, after = steps.read(log, expected, (), absent)
    assert (step.status, after.status) == ("not fetchable here", "not run")
    assert step.urls == ["/opt/rocm/share/amd_smi of the vendor image, which its stand-in could not carry: "
                         "the index has no sdist of amdsmi 7.2.0"]
    assert steps.read(log, expected)[0].status == "failed"  # a real base has the folder: a real failure
    assert steps.read(log.replace("/opt/rocm/share/amd_smi", "/opt/x"), expected, (), absent)[0].status == "failed"


def test_a_step_whose_program_crashed_under_qemu_is_not_runnable_here():
    """The arm64 cann8.5-a3-sglang0.5.8's vLLM build as rehearsed on amd64: torch's aarch64 build crashed
    at import under qemu-user. The step needs a machine of the image's platform, said with qemu's line;
    the same crash with no word from qemu (a native machine) is a failure."""
    expected = [("sglang", "vLLM 0.10.2 (device empty)", False, "x"), ("sglang", "after", False, "y")]
    said = ["  × Failed to build `vllm @ file:///tmp/vllm`",
            "  ╰─▶ Call to `setuptools.build_meta.build_wheel` failed (signal: 11",
            "      /__w/pytorch/pytorch/third_party/ideep/mkl-dnn/third_party/xbyak_aarch64/src/util_impl_linux.h,",
            "      477: Can't open MIDR_EL1 sysfs entry",
            "      qemu: uncaught target signal 11 (Segmentation fault) - core dumped"]
    log = "\n".join(["#9 [sglang 3/4] RUN bash -c x", *(f"#9 80.5 {line}" for line in said),
                     "#9 ERROR: executor failed running [/bin/bash -c x]: exit code: 1"])
    step, after = steps.read(log, expected)
    assert (step.status, after.status) == ("not runnable here", "not run")
    assert step.needs == ["a machine of the image's platform (under qemu-user here: qemu: uncaught target signal 11 "
                          "(Segmentation fault))"]
    assert "MIDR_EL1" in step.as_dict()["output"]
    assert steps.read(log.replace(said[-1], "      Segmentation fault (core dumped)"), expected)[0].status == "failed"


def test_a_step_stopped_at_a_device_compiler_the_stand_in_lacks_is_not_runnable_here():
    """The DTK LMCache build's own last lines, rehearsed: DTK's clang is not on the stand-in (declared in
    pack/dtk/standin.yaml), so the step is not runnable here; on a real base (no compilers declared
    missing) and for any other failure it stays failed."""
    from runner.rehearse.run import Rehearsed
    from runner.rehearse.standin import standin_spec

    expected = [("vllm", "LMCache 0.3.11 built with hipcc", False, "x"), ("vllm", "after", False, "y")]
    dtk = ["bash: line 11: clang: command not found",
           "ln: failed to create symbolic link '/opt/dtk/llvm/lib/clang/lib': No such file or directory"]
    log = "\n".join(["#7 [vllm 2/3] RUN bash -c x", *(f"#7 1.5 {line}" for line in dtk),
                     "#7 ERROR: executor failed running [/bin/bash -c x]: exit code: 1"])
    compilers = standin_spec(ROOT / "pack", "dtk").compilers
    assert "clang" in compilers and "hipcc" in compilers
    step, after = steps.read(log, expected, compilers)
    assert (step.status, step.needs, after.status) == ("not runnable here", ["clang"], "not run")
    assert "clang: command not found" in step.as_dict()["output"]
    assert steps.read(log, expected)[0].status == "failed"  # a real base has its compilers: a real failure
    assert steps.read(log, expected, ("nvcc",))[0].status == "failed"
    # Python's and setuptools' words for a missing compiler; a compiler that ran and failed is a failure
    for line in ("FileNotFoundError: [Errno 2] No such file or directory: '/opt/rocm/bin/hipcc'",
                 "error: command 'hipcc' failed: No such file or directory", "/bin/sh: 1: hipcc: not found"):
        got = steps.read(log.replace(dtk[0], line), expected, ("hipcc",))[0]
        assert (got.status, got.needs) == ("not runnable here", ["hipcc"]), line
    ran = log.replace(dtk[0], "hipcc: error: unknown argument: '--offload-arch=gfx908'")
    assert steps.read(ran, expected, ("hipcc", "clang"))[0].status == "failed"
    # a probe that found no compiler long before a failure of another kind: that failure stands
    probe = log.replace(dtk[0], "\n".join(["#7 1.0 sh: 1: hipconfig: not found"] + [f"#7 1.1 line {i}" for i in range(12)]
                                          + ["#7 1.2 ModuleNotFoundError: No module named 'setuptools_scm'"]))
    assert steps.read(probe, expected, ("hipconfig",))[0].status == "failed"
    # the image: not runnable here, and a step that mounts the missing output fails for want of it
    r = [steps.StepResult("lmcache-build", "build", "not runnable here", needs=["hipcc"]),
         steps.StepResult("vllm", "install the wheels", "failed")]
    steps.mark_starved(r, [[], ["lmcache-build"]])
    assert r[1].starved == ["[lmcache-build] build"]
    assert Rehearsed("dtk25.04-vllm0.11.0", "linux/amd64", steps=r).verdict == "not runnable here"
    assert steps.STATUS_RANK["not fetchable here"] < steps.STATUS_RANK["not runnable here"] < steps.STATUS_RANK["failed"]


def test_a_folder_the_mirrors_partial_sdist_lacks_is_not_fetchable_here():
    """SGLang publishes only python/ as its sdist: the ROCm build's `cd /tmp/sglang/sgl-kernel` fails on the
    mirror's repository for want of a folder the release has, which is not fetchable here (named); a
    missing folder inside the published part, or of a whole repository, is a failure of the recipe."""
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage("rocm7.0-sglang0.5.8", "linux/amd64")
    script = next(st.script for s, i, _ in steps_in_order(leaf) for st in [s.steps[i]]
                  if isinstance(st, Run) and "sgl-kernel" in st.script)
    expected = [("sglang-build", "build sglang", False, script)]

    def log(line: str) -> str:
        return "\n".join(["#9 [sglang-build 2/3] RUN bash -c x", f"#9 9.1 {line}", "#9 ERROR: exit code: 1"])

    step = steps.read(log("/bin/bash: line 16: cd: /tmp/sglang/sgl-kernel: No such file or directory"), expected)[0]
    assert step.status == "not fetchable here"
    assert step.urls[0].startswith("https://github.com/sgl-project/sglang.git sgl-kernel/ (not in its sdist")
    inside = log("/bin/bash: line 16: cd: /tmp/sglang/python/sglang/nope: No such file or directory")
    assert steps.read(inside, expected)[0].status == "failed"
    vllm = [("vllm-build", "build vllm", False, 'git clone --depth 1 "https://github.com/vllm-project/vllm.git" "/tmp/vllm"')]
    assert steps.read(log("cd: /tmp/vllm/csrc: No such file or directory").replace("sglang-build", "vllm-build"),
                      vllm)[0].status == "failed"


def test_a_device_compile_with_no_published_artifact_ends_not_runnable_here():
    """ROCm's flash-attn (CK) and AITER builds need hipcc, and the index has only their sdists: the compile
    line gives way to a note (the clone before it still runs), declared, and the step ends not runnable here."""
    from runner.rehearse.substitutions import NOT_RUNNABLE

    leaf, new, rw = _rewritten("rocm7.0-vllm0.14.1")
    subs = [s for ss in rw.substitutions.values() for s in ss]
    assert {s.what for s in subs if s.kind == "device compile" and s.by.startswith("nothing")} == {
        "flash-attn-build's compile", "aiter-build's compile"}
    fa = next(st.script for s, i, _ in steps_in_order(new) for st in [s.steps[i]]
              if s.name == "flash-attn-build" and isinstance(st, Run) and "flash-attention.git" in st.script)
    assert f'cd /tmp/fa && echo "{NOT_RUNNABLE} hipcc"' in fa and "BUILD_TARGET=rocm" not in fa
    assert "git clone" in fa  # the lines before the compile run as written
    log = "\n".join(["#8 [flash-attn-build 2/3] RUN bash -c x", "#8 3.0 Cloning into '/tmp/fa'...",
                     f"#8 9.0 {NOT_RUNNABLE} hipcc", "#8 DONE 9.1s"])
    step = steps.read(log, [("flash-attn-build", "build flash-attn 2.8.3", True, "x")])[0]
    assert (step.status, step.needs) == ("not runnable here", ["hipcc"])
    # a line after the note that fails is a failure of its own (the note covers what wants the compile's output)
    after = log.replace("#8 DONE 9.1s", "#8 9.2 error: failed to run custom build command for `openssl-sys`\n"
                                        "#8 ERROR: exit code: 1")
    assert steps.read(after, [("flash-attn-build", "build flash-attn 2.8.3", True, "x")])[0].status == "failed"
    # CANN: vllm-ascend's tag build compiles Ascend C kernels; the index has no wheel of those releases
    leaf, new, rw = _rewritten("cann8.5-a3-vllm0.14.1")
    ascend = next(st.script for s, i, _ in steps_in_order(new) for st in [s.steps[i]]
                  if isinstance(st, Run) and "vllm-ascend.git" in st.script)
    assert f'echo "{NOT_RUNNABLE} bisheng"' in ascend and "uv pip install" not in ascend.split("vllm-ascend.git")[1]
    # LMCache-Ascend on a layered row's official image: the same, after its clone
    leaf, new, rw = _rewritten("cann8.5-910b-vllm0.18.0")
    lmc = next(st.script for s, i, _ in steps_in_order(new) for st in [s.steps[i]]
               if s.name == "lmcache-ascend-build" and isinstance(st, Run) and "LMCache-Ascend.git" in st.script)
    assert f'cd /tmp/lmcache-ascend && echo "{NOT_RUNNABLE} bisheng"' in lmc and "export SOC_VERSION=Ascend910B3" in lmc


def test_a_device_compile_whose_release_has_no_wheel_for_the_platform_ends_not_runnable_here():
    """An arm64 LMCache compile the index has no wheel for ends not runnable here, naming the wheel.

    LMCache 0.3.12 is on the index with x86_64 wheels only (aarch64 ones start at 0.5.4): pip refused it,
    rehearsing cuda12.9-vllm0.14.1 on arm64. On amd64 the published wheel stands for the compile."""
    from runner.rehearse.substitutions import NOT_RUNNABLE

    for platform, stands in (("linux/amd64", True), ("linux/arm64", False)):
        leaf, new, rw = _rewritten("cuda12.9-vllm0.14.1", platform)
        (sub,) = [s for ss in rw.substitutions.values() for s in ss if s.what == "lmcache-build's compile"]
        lmc = next(st.script for s, i, _ in steps_in_order(new) for st in [s.steps[i]]
                   if s.name == "lmcache-build" and isinstance(st, Run) and "LMCache.git" in st.script)
        if stands:
            assert sub.by == "the published lmcache==0.3.12" and COMPILE_MARK in lmc
        else:
            assert sub.by == "nothing: the step ends not runnable here (it needs nvcc or hipcc)", sub
            assert "the index has no linux/arm64 wheel of lmcache==0.3.12 for python 3.11 to stand" in sub.why
            assert f'echo "{NOT_RUNNABLE} nvcc or hipcc"' in lmc and "python3 -m build" not in lmc
            assert "git clone" in lmc  # the lines before the compile run as written


def test_a_stand_in_leaves_out_the_ubuntu_only_packages_and_says_so():
    leaf, new, rw = _rewritten("cann8.5-910b-vllm0.14.1")
    subs = [s for ss in rw.substitutions.values() for s in ss]
    assert any(s.what == "the Ubuntu package libmpdec-dev" for s in subs)
    apt = next(st.script for s in new.chain() for st in s.steps if isinstance(st, Run) and "apt-get install" in st.script)
    assert "libmpdec-dev" not in apt and " libmpdec-devel" not in apt and "uuid-dev ffmpeg" in apt


def test_stages_others_mount_keep_their_output_folders():
    """A build step that is not fetchable here ends without its wheel folder: the rehearsed build stage
    still makes it, so the service step that mounts it runs (and says what it misses)."""
    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage("cann8.5-910b-vllm0.14.1", "linux/amd64")
    rw = Rewriter(lambda s: "runner-rehearsal/standin:test", "3.11", "http://127.0.0.1:9")
    rw.outputs(leaf)
    new = rw.stage(leaf)
    omni = next(s for s, _, _ in steps_in_order(new) if s.name == "vllm-omni-build")
    assert omni.steps[-1].script == 'mkdir -p "/workspace/vllm-omni"'


def test_a_stand_in_of_other_debian_packages_is_another_image(monkeypatch):
    from runner.rehearse import standin
    from runner.rehearse.standin import StandinSpec

    spec = StandinSpec({"CUDA_HOME": "/usr/local/cuda"}, ("/usr/local/cuda",), ())
    before = standin.tag("cuda", "linux/amd64", spec)
    monkeypatch.setattr(standin, "PACKAGES", (*standin.PACKAGES, "python3-yaml"))
    assert standin.tag("cuda", "linux/amd64", spec) != before  # a kept stand-in is not reused with other packages
    assert standin.tag("cuda", "linux/arm64", spec) != standin.tag("cuda", "linux/amd64", spec)


def test_a_failed_smoke_check_is_said_with_its_excerpt(capsys):
    from runner.cli.rehearse import say_findings

    image = {"tag": "cuda12.8-voxbox0.0.21", "platform": "linux/amd64", "substitutions": [], "steps": [],
             "smoke": [{"name": "pip-check", "passed": False, "reason": "exit code 1, expected 0",
                        "excerpt": "pygobject 3.42.2 requires pycairo, which is not installed.\n"},
                       {"name": "tini", "passed": True, "reason": "", "excerpt": "tini version 0.19.0"}]}
    say_findings({"images": [image]})
    err = capsys.readouterr().err
    assert "smoke check failed: pip-check: exit code 1" in err and "requires pycairo" in err
    assert "tini" not in err


def test_a_step_that_fails_for_want_of_an_unfetchable_input_is_told_apart():
    from runner.rehearse.run import Rehearsed

    r = [steps.StepResult("flash-attn-build", "build flash-attn", "not fetchable here", urls=["https://x.invalid/a.whl"]),
         steps.StepResult("lmcache-build", "build LMCache", "ran"),
         steps.StepResult("vllm", "kernels built for this torch", "failed", output="The wheel filename \"*.whl\" is invalid"),
         steps.StepResult("vllm", "a step of its own", "failed")]
    steps.mark_starved(r, [[], [], ["flash-attn-build", "lmcache-build"], ["lmcache-build"]])
    assert r[2].starved == ["[flash-attn-build] build flash-attn"] and r[3].starved == []
    image = Rehearsed("cuda12.9-vllm0.14.1", "linux/amd64", steps=r)
    assert image.verdict == "failed step"  # the step of its own failed for a reason of its own
    image.steps = r[:3]
    assert image.verdict == "not fetchable here"  # every failure follows from what the mirror could not serve
    # a build that stopped at a step whose host does not resolve here (no step failed of its own)
    stopped = Rehearsed("rocm7.0-vllm0.11.2", "linux/amd64", error="the build of runner-rehearsal/x failed",
                        steps=[steps.StepResult("vllm-build", "build vllm", "not fetchable here",
                                                urls=["https://download.pytorch.org/whl/rocm6.4/jinja2/"]),
                               steps.StepResult("vllm", "vLLM and its kernels")])
    assert stopped.verdict == "not fetchable here"
    stopped.steps[0].status = "ran"
    assert stopped.verdict.startswith("failed: the build")
    # starved in turn: a stage whose failure was starved leaves its consumers starved too
    chain = [steps.StepResult("a", "fetch", "not fetchable here"), steps.StepResult("b", "build", "failed"),
             steps.StepResult("c", "install", "failed")]
    steps.mark_starved(chain, [[], ["a"], ["b"]])
    assert chain[2].starved == ["[b] build"]


BUILDKIT_LOG = """#5 [2/4] RUN apt-get update
#5 DONE 12.0s

#6 [3/4] RUN uv pip install --system "vllm==0.11.1"
#6 0.512 Resolved 140 packages in 2.1s
#6 3.207   x Failed to download `torch==2.8.0`
#6 3.207   |-> Failed to write to the distribution cache
#6 3.207   `-> No space left on device (os error 28)
#6 ERROR: executor failed running [/bin/sh -c uv pip install --system "vllm==0.11.1"]: exit code: 2
------
 > [3/4] RUN uv pip install --system "vllm==0.11.1":
------
executor failed running [/bin/sh -c uv pip install --system "vllm==0.11.1"]: exit code: 2
"""


def test_a_stand_in_that_cannot_be_built_is_that_images_verdict_with_the_steps_own_error():
    import asyncio

    from runner.rehearse.run import Rehearsal, Rehearsed, failing_output
    from runner.compose.plan import make_plan

    said = failing_output(BUILDKIT_LOG)
    assert "No space left on device" in said and "apt-get" not in said and said.splitlines()[-1].startswith("#6 ERROR")
    assert failing_output("plain failure\n") == "plain failure"
    # a stand-in that failed once is not built again: the next image on it is told the same, and is its own verdict
    project = load_project(ROOT / "matrix.yaml")
    (leaf,) = [lf for lf in make_plan([next(t for t in project.targets if t.backend == "dtk")], project.recipes).leaves
               if lf.platform == "linux/amd64"]
    r = Rehearsal(project, docker=None)
    try:
        from runner.compose.lookup import base_stages

        (base,) = base_stages(leaf.stage)
        r.failed[r.standin_key(base, leaf.target, leaf.stage)] = f"the stand-in for {base.image} could not be built:\n{said}"
        result = asyncio.run(r.one(leaf, builder=None))
    finally:
        r.mirror.stop()
        shutil.rmtree(r.workdir, ignore_errors=True)
    assert isinstance(result, Rehearsed) and result.verdict == "stand-in not built"
    assert "No space left on device" in result.as_dict()["error"] and not result.steps


def test_a_stand_in_not_built_is_said_with_its_error(capsys):
    from runner.cli.rehearse import say_findings

    image = {"tag": "hggc12.3-vllm0.11.1", "platform": "linux/amd64", "verdict": "stand-in not built", "steps": [],
             "substitutions": [], "smoke": [], "error": "the stand-in for x could not be built:\n#6 No space left on device"}
    say_findings({"images": [image]})
    assert "hggc12.3-vllm0.11.1 on linux/amd64: the stand-in for x could not be built" in capsys.readouterr().err


def test_a_vendor_stand_in_carries_the_versioned_folder_its_recipe_links_at_the_backends_home():
    """The vendor images install their toolkit in a versioned folder (/opt/maca-3.3.0) that the runtime
    links at the backend's home only where it exists: the stand-in carries that folder for the target's
    own release (pack/<backend>/standin.yaml, {version}), so the link step and the environment-places
    and backend-home checks meet what the vendor image gives, not a Debian that lacks it."""
    import re

    from runner.compose.dockerfile import stages_for
    from runner.compose.plan import make_plan
    from runner.rehearse.standin import dockerfile, standin_spec

    project = load_project(ROOT / "matrix.yaml", ROOT / "pack")
    checked = set()
    for leaf in make_plan(project.targets, project.recipes).leaves:
        t = leaf.target
        links = [m for s in stages_for(leaf.stage) for step in s.steps if isinstance(step, Run)
                 for m in re.finditer(r"-d (\S+_VERSION\}) \]\]; then ln -s \S+ (\S+);", step.script)]
        if not links or t.backend in checked:
            continue
        spec = standin_spec(ROOT / "pack", t.backend, t.original_backend_version)
        for m in links:
            folder = re.sub(r"\$\{\w+_VERSION\}", t.original_backend_version, m.group(1))
            assert folder in spec.paths, (t.tag, folder, spec.paths)
            assert re.search(rf'^RUN mkdir -p .*"{re.escape(folder)}"', dockerfile(spec), re.M)
        checked.add(t.backend)
    assert {"corex", "dtk", "maca", "musa"} <= checked
    assert standin_spec(ROOT / "pack", "maca", "3.3.0").paths == ("/opt/maca-3.3.0",)


def test_the_published_wheel_standing_for_a_build_drops_what_the_builds_sed_drops(tmp_path):
    """vllm-omni's build drops fa3-fwd (x86_64 wheels only) from its pyproject; the index's wheel standing
    for it requires fa3-fwd, which no arm64 install resolved (the arm64 cann8.5-a3-vllm0.14.1). The
    rehearsed step's own lines after the download run here on a wheel of that shape: the repacked wheel
    requires everything else, not fa3-fwd, and its RECORD holds (wheel unpack checks every hash)."""
    import base64
    import hashlib
    import subprocess
    import sys
    import zipfile

    project = load_project(ROOT / "matrix.yaml")
    leaf = project.leaf_stage("cann8.5-a3-vllm0.14.1", "linux/arm64")
    rw = Rewriter(lambda s: "runner-rehearsal/standin:test", "3.11", "http://127.0.0.1:9")
    rw.outputs(leaf)
    omni = next(s for s, _, _ in steps_in_order(rw.stage(leaf)) if s.name == "vllm-omni-build")
    script = next(st.script for st in omni.steps if isinstance(st, Run) and COMPILE_MARK in st.script)
    after = script.split(COMPILE_MARK, 1)[1].splitlines()[1]  # the line after the download
    assert "wheel unpack" in after and "fa3" in after
    out = tmp_path / "workspace" / "vllm-omni"
    out.mkdir(parents=True)
    info = "vllm_omni-0.14.0.dist-info"
    metadata = "Metadata-Version: 2.4\nName: vllm-omni\nVersion: 0.14.0\nRequires-Dist: omegaconf>=2.3.0\n" \
               "Requires-Dist: fa3-fwd==0.0.1\nRequires-Dist: fa3-fwd-extra>=1\n"
    files = {"vllm_omni/__init__.py": "", f"{info}/METADATA": metadata,
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
                     f"{len(text.encode())}\n" for name, text in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(out / "vllm_omni-0.14.0-py3-none-any.whl", "w") as z:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            z.writestr(name, text)
    lines = after.replace("/workspace/vllm-omni", str(out)).replace("/tmp/unpacked", str(tmp_path / "unpacked"))
    lines = lines.replace("python3 -m wheel", f"{sys.executable} -m wheel")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", lines], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        requires = [ln for ln in z.read(f"{info}/METADATA").decode().splitlines() if ln.startswith("Requires-Dist")]
    assert requires == ["Requires-Dist: omegaconf>=2.3.0", "Requires-Dist: fa3-fwd-extra>=1"]
    check = subprocess.run([sys.executable, "-m", "wheel", "unpack", "--dest", str(tmp_path / "check"), str(wheel)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
