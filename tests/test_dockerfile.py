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
    assert {"PYTHON_VERSION", "CANN_VERSION", "VLLM_VERSION", "VLLM_BASE_IMAGE", "CMAKE_MAX_JOBS"} <= {
        c.value[0].split("=")[0] for c in header_args}
    for line in text.splitlines():
        if line.startswith("ARG ") and "=" in line:
            assert line.rstrip().endswith(("# REQUIRED", "# OPTIONAL", "# REQUIRED (PLACEHOLDER)")), line
    assert "ARG CMAKE_MAX_JOBS=" in text and "(PLACEHOLDER)" in text.split("ARG CMAKE_MAX_JOBS=")[1].splitlines()[0]
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
