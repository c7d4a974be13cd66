"""Dockerfile export: the seed's convention, and every target accepted by the BuildKit parser."""

from __future__ import annotations

import dockerfile
import pytest

from runner.compose.dockerfile import render
from runner.compose.plan import make_plan


@pytest.fixture(scope="module")
def leaves(project):
    return make_plan(project.targets, project.recipes).leaves


@pytest.mark.parametrize("form", ["heredoc", "compat"])
def test_every_target_renders_and_parses(leaves, form):
    for leaf in leaves:
        text = render(leaf.stage, form).text
        commands = dockerfile.parse_string(text)
        froms = [c for c in commands if c.cmd == "FROM"]
        assert froms[-1].value[-1] == render(leaf.stage, form).target
        runs = [c for c in commands if c.cmd == "RUN"]
        assert runs, leaf.target.tag
        if form == "compat":
            assert not any(v.startswith("<<") for c in runs for v in c.value)
        else:
            assert any(v.startswith("<<") for c in runs for v in c.value)


def test_convention(leaves):
    leaf = next(x for x in leaves if x.target.tag == "cann8.5-910b-vllm0.14.1" and x.platform == "linux/arm64")
    text = render(leaf.stage).text
    commands = dockerfile.parse_string(text)
    assert text.startswith("# cann8.5-910b-vllm0.14.1 for linux/arm64")
    header_args = [c for c in commands if c.cmd == "ARG" and commands.index(c) < [x.cmd for x in commands].index("FROM")]
    names = [c.value[0].split("=")[0] for c in header_args]
    # the convention's order: python, jobs, backend version and archs, base image, service version
    assert names[:6] == ["PYTHON_VERSION", "CMAKE_MAX_JOBS", "CANN_VERSION", "CANN_ARCHS", "VLLM_BASE_IMAGE", "VLLM_VERSION"]
    # the base image follows --build-arg CANN_VERSION / PYTHON_VERSION
    assert "ARG VLLM_BASE_IMAGE=quay.io/ascend/cann:${CANN_VERSION}-910b-ubuntu22.04-py${PYTHON_VERSION}" in text
    for line in text.splitlines():
        if line.startswith("ARG ") and "=" in line:
            assert line.rstrip().endswith(("# REQUIRED", "# OPTIONAL", "# REQUIRED (PLACEHOLDER)")), line
    # CMAKE_MAX_JOBS is read by the Mooncake build here, so it is no placeholder and that stage redeclares it
    assert "(PLACEHOLDER)" not in text.split("ARG CMAKE_MAX_JOBS=")[1].splitlines()[0]
    mooncake = text.split("AS mooncake-build")[1].split("\nFROM ")[0]
    assert "\nARG CMAKE_MAX_JOBS\n" in mooncake and "${CMAKE_MAX_JOBS:-" in mooncake
    stages = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    for start, end in zip(stages, stages[1:] + [len(commands)]):
        body = commands[start + 1:end]
        assert body[0].cmd == "SHELL" and body[0].value == ("/bin/bash", "-eo", "pipefail", "-c")
        assert [c.value[0] for c in body[1:4]] == ["TARGETPLATFORM", "TARGETOS", "TARGETARCH"]
    final = commands[stages[-1]:]
    assert ("WORKDIR", ("/",)) in [(c.cmd, c.value) for c in final]
    assert [c for c in final if c.cmd == "ENTRYPOINT"][0].value == ("tini", "--")
    assert not [c for c in commands if c.cmd == "CMD"]
    labels = " ".join(" ".join(c.value) for c in final if c.cmd == "LABEL")
    for key in ("org.opencontainers.image.source", "org.opencontainers.image.revision",
                "org.opencontainers.image.version", "org.opencontainers.image.created", "io.gpustack.runner.backend"):
        assert key in labels
    mounts = [f for c in commands if c.cmd == "RUN" for f in c.flags]
    assert any(f.startswith("--mount=type=bind,from=mooncake-build,") for f in mounts)
    assert "--mount=type=cache,target=/var/cache/apt,id=runner-cann-linux-arm64-apt,sharing=locked" in mounts


def test_compat_form_keeps_the_same_scripts(leaves):
    import shlex

    leaf = next(x for x in leaves if x.target.tag == "rocm7.0-vllm0.14.1")
    heredoc = [c for c in dockerfile.parse_string(render(leaf.stage, "heredoc").text) if c.cmd == "RUN"]
    compat = [c for c in dockerfile.parse_string(render(leaf.stage, "compat").text) if c.cmd == "RUN"]
    assert len(heredoc) == len(compat)
    for h, c in zip(heredoc, compat):
        assert h.flags == c.flags
        if h.value[0].startswith("<<"):
            script = h.original.rstrip("\n").split("\n", 1)[1].rsplit("\n", 1)[0]
            # the compat RUN prints exactly the heredoc's lines
            quoted = c.value[0].split("printf '%s\\n'", 1)[1].rsplit(")", 1)[0]
            assert "\n".join(shlex.split(quoted)) == script


def test_unused_required_arg_is_a_placeholder(leaves):
    """A target whose stages never read CMAKE_MAX_JOBS marks it (PLACEHOLDER), as the convention asks."""
    leaf = next(x for x in leaves if x.target.backend == "corex")
    text = render(leaf.stage).text
    line = next(x for x in text.splitlines() if x.startswith("ARG CMAKE_MAX_JOBS="))
    assert ("${CMAKE_MAX_JOBS" in text) != line.endswith("# REQUIRED (PLACEHOLDER)")


def test_every_cann_install_after_the_torch_stage_holds_the_images_torch(leaves):
    """CANN's device-empty vLLM and SGLang's NPU extras ask for no torch, and uv leaves what a step does not
    ask for unguarded: each install of a compiled CANN service stage carries the image's torch as a
    constraint (rehearsing cann8.5-a3-vllm0.14.1 found torch replaced by a later CUDA build after the torch stage)."""
    import re

    from runner.compose.stages import Run

    checked = 0
    for leaf in leaves:
        t = leaf.target
        torch_stage = next((s for s in leaf.stage.chain() if s.name.startswith("torch")), None)
        if t.backend != "cann" or torch_stage is None:
            continue
        torch = next(a.value for a in torch_stage.args if a.name == "TORCH_VERSION")
        installs = [s.script for s in leaf.stage.steps if isinstance(s, Run) and "uv pip install" in s.script]
        assert installs, t.tag
        for script in installs:
            pins = re.search(r"cat > /tmp/runner-constraints.txt <<'RUNNER_PINS'\n(.*?)\nRUNNER_PINS", script, re.S)
            assert pins and f"torch=={torch}" in pins.group(1).splitlines(), (t.tag, script[:300])
            assert "--constraint /tmp/runner-constraints.txt" in script
        checked += 1
    assert checked >= 4
