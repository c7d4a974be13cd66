"""What a rehearsal's source mirror answers from elsewhere, declared in runner.rehearse.substitutions:
CMake's GitHub release tarball made from the index's cmake wheel (laid out as the release lays it
out, executables kept executable), and PyTorch's wheel indexes answered by the package index. The
real recipes' lines are what the declarations must match."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from runner.compose.project import load_project
from runner.compose.stages import Run
from runner.rehearse import release_files
from runner.rehearse.rewrite import steps_in_order
from runner.rehearse.run import _compiled, _fetches
from runner.rehearse.substitutions import IndexElsewhere, ReleaseFromWheel, mirrored_elsewhere
from runner.verify.upstream import Upstreams
from tests.conftest import ROOT


def _wheel(path: Path, version: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        exe = zipfile.ZipInfo("cmake/data/bin/cmake")
        exe.external_attr = 0o755 << 16
        z.writestr(exe, f"#!/bin/sh\necho 'cmake version {version}'\n")
        z.writestr("cmake/data/share/cmake-3.31/Modules/X.cmake", "# module\n")
        z.writestr(f"cmake-{version}.dist-info/METADATA", "Name: cmake\n")
    return path


class _Index(Upstreams):
    """Upstreams whose index lists given wheel file names (each a small cmake-like wheel)."""

    def __init__(self, root: Path, names: list[str]) -> None:
        super().__init__(root, index="http://index.invalid/")
        self.names = names

    def index_files(self, project: str) -> list[dict]:
        return [{"filename": n, "url": n} for n in self.names]

    def _download(self, f: dict) -> Path:
        return _wheel(self.root / f["filename"], f["filename"].split("-")[1])


def _scripts(tag: str, platform: str = "linux/amd64") -> list:
    leaf = load_project(ROOT / "matrix.yaml").leaf_stage(tag, platform)
    return [s.steps[i] for s, i, _ in steps_in_order(leaf) if isinstance(s.steps[i], Run)]


def test_the_real_recipes_cmake_and_torch_index_lines_are_declared():
    steps = _scripts("cuda12.8-voxbox0.0.21")
    found = [(kind, m[0]) for st in steps for m, kind in mirrored_elsewhere(_fetches(st))]
    kinds = {type(k) for k, _ in found}
    assert kinds == {ReleaseFromWheel, IndexElsewhere}, found
    assert "https://download.pytorch.org/whl/cu128" in [u for _, u in found]
    assert sum(_compiled(st) for st in steps) == 2  # the CMake line and the torch install: substituted, not ran


def test_cmake_tarball_is_made_from_the_nearest_wheel_of_the_same_minor(tmp_path):
    names = ["cmake-3.31.6-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
             "cmake-3.31.10-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
             "cmake-3.31.6-py3-none-musllinux_1_1_x86_64.whl",
             "cmake-4.0.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
             "cmake-3.31.6-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"]
    script = ('curl -fsSL "https://github.com/Kitware/CMake/releases/download/v3.31.7/cmake-3.31.7-linux-$(uname -m)'
              '.tar.gz" | tar -xz --strip-components=1 -C /usr')
    made, missing = release_files.make([script], ["linux/amd64"], tmp_path / "files", _Index(tmp_path, names))
    assert not missing
    (url, sub), = made.items()
    assert url.endswith("cmake-3.31.7-linux-x86_64.tar.gz") and "3.31.6" in sub.by and "no 3.31.7" in sub.by
    tarball = tmp_path / "files" / url.split("://", 1)[1]
    # the recipe's own extraction: --strip-components=1 into a prefix gives bin/cmake, executable
    prefix = tmp_path / "usr"
    prefix.mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "--strip-components=1", "-C", str(prefix)], check=True)
    out = subprocess.run([str(prefix / "bin" / "cmake")], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "cmake version 3.31.6"
    assert (prefix / "share" / "cmake-3.31" / "Modules" / "X.cmake").is_file()
    with tarfile.open(tarball) as t:
        assert not any("dist-info" in n for n in t.getnames())


def test_a_release_file_with_no_wheel_of_its_minor_is_left_to_answer_404(tmp_path):
    names = ["cmake-4.0.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    script = 'curl -fsSL "https://github.com/Kitware/CMake/releases/download/v3.31.7/cmake-3.31.7-linux-x86_64.tar.gz"'
    made, missing = release_files.make([script], ["linux/amd64"], tmp_path / "files", _Index(tmp_path, names))
    assert not made and "no manylinux x86_64 wheel of cmake 3.31" in next(iter(missing.values()))
    assert not (tmp_path / "files").exists()


def test_ascends_pypi_mirror_is_answered_by_the_index_only_where_every_pinned_release_is_published_there(monkeypatch):
    """Ascend's mirror adds dev builds of torch-npu to the index's projects: a row pinning a release the index
    publishes gets the index in its place (declared), a row pinning a dev build keeps the mirror's 404."""
    from runner.compose.plan import make_plan
    from runner.compose.project import _validate
    from runner.rehearse import substitutions
    from runner.rehearse.run import answered_indexes
    from tests.conftest import SEED_MATRIX

    asked = []

    def published(requirement: str) -> bool:  # the index here: every release but the dev builds
        asked.append(requirement)
        return ".dev" not in requirement
    monkeypatch.setattr(substitutions, "on_the_index", published)
    project = _validate(SEED_MATRIX, ROOT / "pack")
    ascend = "https://mirrors.huaweicloud.com/ascend/repos/pypi"

    def runs(tag: str) -> list[Run]:
        t = next(x for x in project.targets if x.tag == tag)
        leaf = make_plan([t], project.recipes).leaves[0]
        return [s.steps[i] for s, i, _ in steps_in_order(leaf.stage) if isinstance(s.steps[i], Run)]

    current = runs("cann8.5-a3-vllm0.14.1")
    assert ascend in answered_indexes(current)
    # PyTorch's CPU index is answered too, with an override for its +cpu builds (the test below)
    assert "https://download.pytorch.org/whl/cpu" in answered_indexes(current)
    assert "torch-npu==2.9.0.*" in asked
    dev = runs("cann8.2-a3-vllm0.10.1.1")  # torch-npu 2.7.1.dev20250724: only Ascend's mirror has it
    assert ascend not in answered_indexes(dev) and "torch-npu==2.7.1.dev20250724" in asked
    # one rehearsal of both: the mirror serves the index's URL for every step or for none
    assert ascend not in answered_indexes(current + dev)


def test_pytorchs_cpu_index_is_answered_by_the_same_torch_release_with_an_override(tmp_path):
    """torch-npu on amd64 pins torch==X+cpu, a build only PyTorch's CPU index has: a rehearsal answers that
    index with the package index and tells uv (UV_OVERRIDE) that torch is X. The step's own prelude runs
    here as bash runs it (no torch yet: the stage's pin; torch installed: its release), then uv resolves
    torch-npu with it against the package index."""
    import os
    import shutil

    from runner.rehearse.run import answered_indexes
    from runner.rehearse.substitutions import OVERRIDE_MARK, local_builds_override

    steps = _scripts("cann8.5-a3-vllm0.14.1")
    cpu = "https://download.pytorch.org/whl/cpu"
    assert cpu in answered_indexes(steps)
    torch_step = next(st for st in steps if st.requirements and any(p.name == "torch-npu" for p in st.requirements.packages))
    script = local_builds_override(torch_step.script, torch_step.requirements)
    assert script.endswith(torch_step.script) and OVERRIDE_MARK in script
    prelude = script[:script.index(OVERRIDE_MARK) + len(OVERRIDE_MARK)]
    assert local_builds_override("uv pip install ray", None) == "uv pip install ray"

    def run(python_prints: str) -> str:
        fake = tmp_path / "bin"
        fake.mkdir(exist_ok=True)
        (fake / "python3").write_text(f"#!/bin/sh\n{python_prints}\n")
        (fake / "python3").chmod(0o755)
        env = {"PATH": f"{fake}:/usr/bin:/bin", "TORCH_VERSION": "2.9.0"}
        try:
            done = subprocess.run(["bash", "-ec", f'{prelude}\necho "$UV_OVERRIDE"; cat "$UV_OVERRIDE"'], env=env,
                                  capture_output=True, text=True, timeout=60)
        finally:
            Path("/tmp/runner-overrides.txt").unlink(missing_ok=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("exit 1") == "/tmp/runner-overrides.txt\ntorch==2.9.0\n"  # no torch yet: the step's pin
    assert run("echo 2.8.0+cpu") == "/tmp/runner-overrides.txt\ntorch==2.8.0\n"  # the image's torch, its local part off
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    (tmp_path / "overrides.txt").write_text("torch==2.9.0\n")
    subprocess.run([uv, "venv", "-q", "-p", "3.11", str(tmp_path / "venv")], check=True, timeout=120)
    done = subprocess.run([uv, "pip", "install", "--dry-run", "--python", str(tmp_path / "venv"), "torch-npu==2.9.0",
                           "torch==2.9.0"], env={**os.environ, "UV_OVERRIDE": str(tmp_path / "overrides.txt")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "torch-npu==2.9.0" in done.stderr and "torch==2.9.0" in done.stderr, done.stderr[-1500:]
