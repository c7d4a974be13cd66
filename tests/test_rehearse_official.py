"""Stand-ins of official service images, without a daemon: every row that layers an official image gets
the declared substitution of that image, its stand-in installs exactly the row's release of the
service, a compiled row gets none, and a rehearsal's base for a layered row is that stand-in (built on
the backend's Debian stand-in) with what it cannot carry said."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from packaging.version import Version

from runner.compose.kit import TORCHVISION
from runner.rehearse import official_standin, run, standin
from runner.rehearse.rewrite import STANDIN_REPOSITORY
from runner.rehearse.official_standin import OFFICIAL_CANNOT_CARRY


def _layered(project):
    for t in project.targets:
        official = getattr(project.recipes[t.backend].module, "OFFICIAL", None)
        if official is not None and official.layers(t):
            yield t, official


def test_every_layered_rows_official_image_has_its_declared_stand_in(project):
    seen = set()
    for t, official in _layered(project):
        for platform in t.platforms:
            base = project.recipes[t.backend].base(t, platform)
            found = official_standin.official_of(project.recipes, t, base)
            assert found is not None, (t.tag, platform, base.image)
            assert (found.image, found.service, found.version) == (official.image(t), t.service, t.service_version)
            sub = found.substitution("runner-rehearsal/standin:x", "2.13.0")
            assert sub.kind == "official image" and sub.what == official.image(t)
            assert f"{t.service}=={t.service_version}" in sub.by and "torch 2.13.0" in sub.by
            assert "cannot be pulled here" in sub.why and "Ubuntu base" in sub.why
            assert all(c in sub.why for c in OFFICIAL_CANNOT_CARRY[t.backend])
            seen.add(t.backend)
    assert seen == {"cuda", "rocm", "cann"}  # each backend that declares OFFICIAL has layered rows


def test_the_stand_in_installs_exactly_the_rows_release(project):
    t = project.target("cuda13.0-vllm0.32.0")
    base = project.recipes["cuda"].base(t, "linux/amd64")
    found = official_standin.official_of(project.recipes, t, base)
    assert found.image == "vllm/vllm-openai:v0.32.0-ubuntu2404"
    text = official_standin.dockerfile("runner-rehearsal/standin:cuda-amd64-abc", found)
    assert text.splitlines()[0] == "FROM runner-rehearsal/standin:cuda-amd64-abc"
    installs = [line for line in text.splitlines() if "uv pip install" in line]
    # the release, and LMCache, which vLLM's CUDA release image carries among its KV-cache connectors
    assert len(installs) == 1 and re.findall(r'"([^"]+)"', installs[0]) == ["vllm==0.32.0", "lmcache"]
    assert "--system" in installs[0] and "--no-cache" in installs[0]  # no cache left for the smoke check to find
    sglang = project.target("cuda13.0-sglang0.5.22")
    found = official_standin.official_of(project.recipes, sglang, project.recipes["cuda"].base(sglang, "linux/amd64"))
    assert found.image == "lmsysorg/sglang:v0.5.22-cu130" and found.requirement == "sglang==0.5.22"
    assert "--override" not in text  # vLLM's stand-in leaves nothing out
    text = official_standin.dockerfile("runner-rehearsal/standin:cuda-amd64-abc", found)
    (install,) = [line for line in text.splitlines() if "uv pip install" in line]
    assert re.findall(r'"(\w[^";]*==[^"]+)"', install) == ["sglang==0.5.22"]  # the one requirement
    assert "cuda-tile; sys_platform == 'never'" in install and "--override /tmp/leave-out.txt" in install
    assert "cuda-tile (" in found.substitution("t", "").why  # what it leaves out is said


def test_a_compiled_row_gets_no_official_stand_in(project):
    for tag in ("cuda12.8-vllm0.14.1", "cuda12.8-voxbox0.0.21", "cann8.5-910b-vllm0.14.1"):
        t = project.target(tag)
        base = project.recipes[t.backend].base(t, t.platforms[0])
        assert official_standin.official_of(project.recipes, t, base) is None, tag


def test_the_stand_ins_tag_names_what_it_stands_for(project):
    t = project.target("cuda13.0-vllm0.32.0")
    found = official_standin.official_of(project.recipes, t, project.recipes["cuda"].base(t, "linux/amd64"))
    amd = official_standin.tag("runner-rehearsal/standin:cuda-amd64-abc", found, "linux/amd64")
    assert amd.startswith(f"{STANDIN_REPOSITORY}official-vllm0.32.0-amd64-")  # a stand-in base to the rewrite
    assert amd != official_standin.tag("runner-rehearsal/standin:cuda-amd64-def", found, "linux/amd64")
    assert amd != official_standin.tag("runner-rehearsal/standin:cuda-amd64-abc", found, "linux/arm64")


def _leaf(project, t, platform="linux/amd64"):
    from runner.compose.plan import make_plan
    from dataclasses import replace

    return make_plan([replace(t, platforms=(platform,))], project.recipes).leaves[0].stage


class _Docker:
    """Answers a rehearsal's daemon calls: nothing is there or pullable, builds succeed, torch is 2.13.0
    and the service's wheel requires torch==2.14.0."""

    def __init__(self):
        self.calls: list[tuple[str, ...]] = []

    async def run(self, *args, check=True, timeout=None):
        self.calls.append(args)
        if args[0] == "run":
            return 0, ("torch==2.14.0\n" if official_standin.TORCH_WANTED in args else "2.13.0\n"), ""
        return (0, "", "") if args[0] == "build" else (1, "", "no such image")


def test_a_layered_rows_base_is_the_official_stand_in_on_the_debian_one(project, tmp_path, monkeypatch):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(b"")
    monkeypatch.setattr(standin, "rootfs", lambda platform: rootfs)
    docker = _Docker()
    r = run.Rehearsal(project, docker)
    t = project.target("cuda13.0-vllm0.32.0")
    base = project.recipes["cuda"].base(t, "linux/amd64")
    asked = []  # the official image was built on its release day: the index as it stood then
    monkeypatch.setattr(official_standin, "release_day", lambda *a: asked.append(a) or "2026-11-02T23:59:59Z")
    tag, subs, stood_in = asyncio.run(r.base(base, t, _leaf(project, t)))
    assert asked == [("vllm", "0.32.0")] and "as the index stood on 2026-11-02, the day of the service's release" in subs[0].by
    assert "--exclude-newer 2026-11-02T23:59:59Z" in (r.workdir / tag.rsplit(":", 1)[1] / "Dockerfile").read_text()
    builds = [c[c.index("-t") + 1] for c in docker.calls if c[0] == "build"]
    assert stood_in and tag == builds[-1] and tag.startswith(f"{STANDIN_REPOSITORY}official-vllm0.32.0-amd64-")
    assert builds[0].startswith(f"{STANDIN_REPOSITORY}cuda-amd64-")  # the Debian stand-in, under it
    assert subs[0].kind == "official image" and subs[0].what == "vllm/vllm-openai:v0.32.0-ubuntu2404"
    assert "vllm==0.32.0 and lmcache, with the torch 2.13.0 the service's wheel pins" in subs[0].by
    # of the image's KV-cache connectors, LMCache is carried (the kv-cache deployment needs it), the rest is said
    assert "LMCache" not in subs[0].why and "NIXL, CuPy and Mooncake" in subs[0].why
    assert not any(s.kind == "stand-in base" and s.what == base.image for s in subs)  # said once, as the official image
    assert r.images == builds
    # a compiled row on the same machine gets the Debian stand-in alone
    compiled = project.target("cuda12.8-voxbox0.0.21")
    tag, subs, _ = asyncio.run(r.base(project.recipes["cuda"].base(compiled, "linux/amd64"), compiled,
                                      _leaf(project, compiled)))
    assert tag == builds[0] and subs[0].kind == "stand-in base" and not any(s.kind == "official image" for s in subs)
    shutil.rmtree(r.workdir)


def test_the_version_check_reads_pips_output_whole(project, tmp_path):
    """`pip show | grep -q` under pipefail failed the first rehearsal of cuda13.0-vllm0.32.0: grep quit at
    the match while pip still wrote (exit 120). The check as rendered passes whatever pip writes after the
    version line, and still refuses another version."""
    import subprocess

    from runner.compose.stages import Run

    pip = tmp_path / "python3"  # pip show: the version line, then more than grep waits for
    pip.write_text('#!/bin/bash\necho "Name: vllm"; echo "Version: ${SHOWN}"; sleep 0.2; seq 1 20000\n')
    pip.chmod(0o755)
    checks = {}
    for tag in ("cuda13.0-vllm0.32.0", "corex4.2-vllm0.8.3"):
        leaf = project.leaf_stage(tag, "linux/amd64")
        checks[tag] = next(st.script for s in leaf.chain() for st in s.steps
                           if isinstance(st, Run) and "pip show vllm" in st.script and "grep -q" in st.script)
        assert not re.search(r"pip show [\w -]+\| *grep -q", checks[tag]), tag
    script = checks["cuda13.0-vllm0.32.0"]
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "VLLM_VERSION": "0.32.0"}
    ran = lambda shown: subprocess.run(["bash", "-eo", "pipefail", "-c", script], env={**env, "SHOWN": shown},  # noqa: E731
                                       capture_output=True, text=True, timeout=60)
    assert ran("0.32.0").returncode == 0
    assert ran("0.31.0").returncode != 0
    old = 'python3 -m pip show vllm | grep -q "^Version: ${VLLM_VERSION}"'  # the line as it was: fails here
    assert subprocess.run(["bash", "-eo", "pipefail", "-c", old], env={**env, "SHOWN": "0.32.0"},
                          capture_output=True, timeout=60).returncode != 0


def test_a_layered_row_allows_opentelemetrys_beta_only_packages(project):
    """The first rehearsal of cuda13.0-vllm0.32.0 failed no-prereleases on them: the image's vLLM and Ray's
    dashboard bring OpenTelemetry packages published only as betas, as on a compiled row."""
    from runner.compose.kit import OTEL_BETAS
    from runner.compose.requirements import allowed_prereleases, canonical

    for tag in ("cuda13.0-vllm0.32.0", "cuda13.0-sglang0.5.22", "rocm7.2-vllm0.32.0", "cann9.2-a3-vllm0.30.0"):
        allowed = allowed_prereleases(project.leaf_stage(tag, project.target(tag).platforms[0]))
        assert {canonical(n) for n in OTEL_BETAS} <= allowed, tag
        assert "vllm" not in allowed and "ray" not in allowed, tag  # the service and Ray stay releases
        # the pre-releases SGLang pins itself, on its rows only
        assert ({"flash-attn-4", "cuda-tile"} <= allowed) == ("sglang" in tag), tag


def test_sglangs_intercept_reads_a_server_args_that_is_no_dataclass(tmp_path):
    """SGLang 0.5.22's ServerArgs is no dataclass: the consumer probe's hook failed every `sglang serve`
    line of the rehearsed cuda13.0-sglang0.5.22 with asdict()'s TypeError. It reads either kind."""
    import json
    import subprocess
    import sys

    from runner.verify import probes

    hooks = str(Path(probes.__file__).parent / "consumer_hooks")
    program = (f"import sys, dataclasses; sys.path.insert(0, {hooks!r}); import runner_intercept as r\n"
               "class ServerArgs:\n    def __init__(self): self.model_path = '/models/model'; self.port = 40000\n"
               "    def resolve_once(self): pass\n"
               "@dataclasses.dataclass\nclass Old:\n    model_path: str = '/models/old'\n"
               "r.sglang_run_server(Old() if sys.argv[1] == 'old' else ServerArgs())\n")
    for kind, model in (("new", "/models/model"), ("old", "/models/old")):
        result = tmp_path / f"{kind}.json"
        done = subprocess.run([sys.executable, "-c", program, kind], env={"RUNNER_INTERCEPT_RESULT": str(result)},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        got = json.loads(result.read_text())
        assert got["problem"] == "" and got["values"]["model_path"] == model, got
        assert "resolve_once" not in got["values"]


def test_a_vendor_image_stands_in_with_the_service_and_torch_its_recipe_checks(project, tmp_path, monkeypatch):
    """The vendor backends' service step checks the vendor's service and torch versions: their stand-in
    carries both, from the index, so that check and every step after it run here."""
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(b"")
    monkeypatch.setattr(standin, "rootfs", lambda platform: rootfs)
    r = run.Rehearsal(project, _Docker())
    seen = {}
    for t in project.targets:
        if t.backend not in ("corex", "dtk", "hggc", "maca", "musa") or t.service not in ("vllm", "sglang"):
            continue
        leaf = _leaf(project, t, t.platforms[0])
        base = leaf.chain()[0]
        found = official_standin.vendor_of(t, base, leaf)
        torch = next(a.value for s in leaf.chain() for a in s.args if a.name == f"{t.service.upper()}_TORCH_VERSION")
        # SGLang with the srt extra, which holds its runtime (torch among it) before 0.5.5; from 0.5.5 with the
        # diffusion extra, which `sglang serve` imports on every start, its CUDA kernels left out
        late = t.service == "sglang" and Version(t.service_version) >= Version("0.5.5")
        service = (f"{t.service}[diffusion]" if late else f"{t.service}[srt]") if t.service == "sglang" else t.service
        assert found is not None and (found.image, found.requirement, found.torch) == (
            base.image, f"{service}=={t.service_version}", torch), t.tag
        text = official_standin.dockerfile("runner-rehearsal/standin:x", found)
        assert "--override /tmp/leave-out.txt" in text and f"torch=={torch}\\n" in text  # held over the service's pin
        # with its companions of the same release: today's torchvision would require a later torch
        assert f"torchaudio=={torch}\\n" in text and f"torchvision=={TORCHVISION[torch]}\\n" in text, t.tag
        assert "--exclude-newer" not in text  # no era known: today's index (said so in the substitution)
        # and installed: the image ships it (a vendor's vLLM: its release's sdist built, see below)
        wanted = f"{t.service}-{t.service_version}.tar.gz" if t.service == "vllm" else f'"{service}=={t.service_version}"'
        assert f'{wanted} && uv pip install' in text or f'{wanted} "torch=={torch}"' in text, t.tag
        assert ("st-attn; sys_platform == 'never'" in text) == late, t.tag
        why = found.substitution("runner-rehearsal/standin:x", torch).why
        assert ("loads the CUDA driver (libcuda.so.1)" in why) == (t.service == "sglang"), t.tag
        # a vendor's vLLM: its release's sdist built with no device on the vendor's torch, installed first
        lines = text.splitlines()
        built = [i for i, line in enumerate(lines) if "VLLM_TARGET_DEVICE=empty" in line]
        if t.service == "vllm":  # from the build context: pip refuses the wheel's version 0.9.2+empty for ==0.9.2
            assert len(built) == 1 and f"--mount=type=bind,source={found.sdist_name}," in lines[built[0]], t.tag
            assert "--no-build-isolation" in lines[built[0]] and f'/tmp/built/*.whl "ray" "numba" "torch=={torch}"' in lines[built[0]]
            assert f'"torch=={torch}" "setuptools' in lines[built[0] - 1], t.tag  # the build's torch, before it
            assert "built from its sdist with no device" in found.substitution("x", torch).by
        else:  # the index's build of the service, which may want another torch: said, with what it means
            assert not built, t.tag
            why = found.substitution("x", torch, wants="torch==9.9.9").why
            assert f"sglang {t.service_version} requires torch==9.9.9, the vendor's build of it runs on its torch" in why
        seen[t.backend] = found
    assert set(seen) == {"corex", "dtk", "hggc", "maca", "musa"}
    # a row whose recipe checks nothing of the image gets none, nor does a base outside the leaf's chain
    cuda = project.target("cuda12.8-voxbox0.0.21")
    assert official_standin.vendor_of(cuda, project.recipes["cuda"].base(cuda, "linux/amd64"), _leaf(project, cuda)) is None
    t = project.target("maca3.3-vllm0.11.2") if any(x.tag == "maca3.3-vllm0.11.2" for x in project.targets) else \
        next(x for x in project.targets if x.backend == "maca" and x.service == "vllm")
    leaf = _leaf(project, t, t.platforms[0])
    asked = []
    monkeypatch.setattr(official_standin, "release_day", lambda *a: asked.append(a) or "2025-11-20T23:59:59Z")
    sdist = tmp_path / "sdist.tar.gz"
    sdist.write_bytes(b"the release's sdist")
    monkeypatch.setattr(r.mirror.upstreams, "sdist", lambda *a: asked.append(a) or sdist)
    tag, subs, stood_in = asyncio.run(r.base(leaf.chain()[0], t, leaf))
    assert stood_in and tag.startswith(f"{STANDIN_REPOSITORY}vendor-vllm{t.service_version}-")
    assert asked == [("vllm", t.service_version)] * 2  # its release day, its sdist
    assert subs[0].what == leaf.chain()[0].image and "torch 2.13.0" in subs[0].by
    assert "as the index stood on 2025-11-20, the day of the service's release" in subs[0].by
    assert "cannot carry: the vendor's toolkit" in subs[0].why
    assert (f"vllm {t.service_version} built from its sdist with no device (VLLM_TARGET_DEVICE=empty) on torch 2.13.0"
            in subs[0].by)
    made = (r.workdir / tag.rsplit(":", 1)[1] / "Dockerfile").read_text()
    assert "--exclude-newer 2025-11-20T23:59:59Z" in made  # the stand-in built is the one of that era
    assert (r.workdir / tag.rsplit(":", 1)[1] / f"vllm-{t.service_version}.tar.gz").read_bytes() == b"the release's sdist"
    shutil.rmtree(r.workdir)


def test_sglangs_intercept_reads_the_launcher_run_as_a_module(tmp_path):
    """SGLang before 0.5.5 starts as `python3 -m sglang.launch_server` (runner.compose.commands): runpy
    asks the hook's loader for the module's code, which failed every start of the rehearsed
    musa4.3-sglang0.5.2 ('Loader' object has no attribute 'get_code'). The launcher's own layout (0.5.2):
    it imports launch_server from the server module by name and calls it under __main__."""
    import json
    import subprocess
    import sys

    from runner.verify import probes

    hooks = str(Path(probes.__file__).parent / "consumer_hooks")
    pkg = tmp_path / "sglang"
    (pkg / "srt" / "entrypoints").mkdir(parents=True)
    for init in (pkg, pkg / "srt", pkg / "srt" / "entrypoints"):
        (init / "__init__.py").write_text("")
    (pkg / "srt" / "entrypoints" / "http_server.py").write_text(
        "import dataclasses\n@dataclasses.dataclass\nclass ServerArgs:\n    model_path: str\n"
        "def launch_server(server_args):\n    raise SystemExit('the server started: the hook did not see it')\n")
    (pkg / "launch_server.py").write_text(
        "import argparse, sys\nfrom sglang.srt.entrypoints.http_server import ServerArgs, launch_server\n"
        "if __name__ == '__main__':\n    parser = argparse.ArgumentParser()\n    parser.add_argument('--model-path')\n"
        "    launch_server(ServerArgs(parser.parse_args(sys.argv[1:]).model_path))\n")
    (tmp_path / "sitecustomize.py").write_text(f"import sys; sys.path.insert(0, {hooks!r})\n"
                                               "import runner_intercept; runner_intercept.install()\n")
    result = tmp_path / "result.json"
    env = {"PYTHONPATH": str(tmp_path), "RUNNER_INTERCEPT": "sglang", "RUNNER_INTERCEPT_RESULT": str(result)}
    done = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--model-path", "/models/model"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(result.read_text())
    assert got["problem"] == "" and got["values"]["model_path"] == "/models/model", got


def test_a_vendor_folder_the_index_publishes_is_carried_from_its_sdist_at_the_images_release(project, tmp_path,
                                                                                              monkeypatch):
    """ROCm's /opt/rocm/share/amd_smi is AMD's `amdsmi`, on the index at ROCm's releases: the stand-in carries
    that sdist, unpacked, so the runtime's install of it runs as written; a release the index lacks is said."""
    import tarfile

    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(b"")
    monkeypatch.setattr(standin, "rootfs", lambda platform: rootfs)
    sdist = tmp_path / "amdsmi-7.0.2.tar.gz"
    (tmp_path / "src" / "amdsmi-7.0.2" / "amdsmi").mkdir(parents=True)
    (tmp_path / "src" / "amdsmi-7.0.2" / "pyproject.toml").write_text("[project]\nname = 'amdsmi'\n")
    (tmp_path / "src" / "amdsmi-7.0.2" / "amdsmi" / "__init__.py").write_text("")
    with tarfile.open(sdist, "w:gz") as out:
        out.add(tmp_path / "src" / "amdsmi-7.0.2", arcname="amdsmi-7.0.2")
    seen = []

    class Recording(_Docker):
        async def run(self, *args, check=True, timeout=None):
            if args[0] == "build":  # what the build context holds when the build runs
                ctx = Path(args[-1])
                seen.append(((ctx / "Dockerfile").read_text(),
                             sorted(str(p.relative_to(ctx / "index")) for p in (ctx / "index").rglob("*"))))
            return await super().run(*args, check=check, timeout=timeout)

    r = run.Rehearsal(project, Recording())
    asked = []

    def sdist_of(name: str, version: str) -> Path:
        asked.append((name, version))
        if version == "7.0.2":
            return sdist
        raise LookupError(f"the index has no sdist of {name} {version}")
    monkeypatch.setattr(r.mirror.upstreams, "sdist", sdist_of)
    try:
        rocm = [t for t in project.targets if t.backend == "rocm" and not project.recipes["rocm"].module.OFFICIAL.layers(t)]
        on_702 = next(t for t in rocm if t.original_backend_version == "7.0.2")
        base = project.recipes["rocm"].base(on_702, "linux/amd64")
        tag, subs = asyncio.run(r.debian(base, on_702))
        dockerfile, files = seen[-1]
        assert 'COPY ["index/amdsmi-7.0.2/", "/opt/rocm/share/amd_smi/"]' in dockerfile
        assert files == ["amdsmi-7.0.2", "amdsmi-7.0.2/amdsmi", "amdsmi-7.0.2/amdsmi/__init__.py",
                         "amdsmi-7.0.2/pyproject.toml"]  # the sdist's own files, its top folder stripped
        carried = [s for s in subs if s.what == f"/opt/rocm/share/amd_smi of {base.image}"]
        assert carried and "amdsmi 7.0.2" in carried[0].by and "cannot carry" in subs[0].why
        # another ROCm release the index has no amdsmi sdist of: another stand-in, without the folder, said so
        other = next(t for t in rocm if t.original_backend_version != "7.0.2")
        tag2, subs2 = asyncio.run(r.debian(project.recipes["rocm"].base(other, "linux/amd64"), other))
        assert tag2 != tag and "COPY [\"index/" not in seen[-1][0]
        assert f"/opt/rocm/share/amd_smi (the index has no sdist of amdsmi {other.original_backend_version})" in subs2[0].why
        assert not any(s.what.startswith("/opt/rocm/share/amd_smi") for s in subs2)
        assert asked == [("amdsmi", "7.0.2"), ("amdsmi", other.original_backend_version)]
        # kept for reading its images' steps: one that stops on the folder is not fetchable here (steps.read)
        assert r.absent == {("rocm", other.original_backend_version): {
            "/opt/rocm/share/amd_smi": f"the index has no sdist of amdsmi {other.original_backend_version}"}}
    finally:
        shutil.rmtree(r.workdir, ignore_errors=True)
