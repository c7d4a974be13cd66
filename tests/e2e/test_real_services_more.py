"""The smoke specs against real services, continued: the newest rows' stand-ins of the official vLLM
and SGLang images. A module of their own so that the vLLM 0.14.1 stand-in of test_real_services.py (a
module fixture, about 10 GB) is removed before these are built: two such images side by side with the
wheelhouse ran a CI machine out of disk. Each image here is removed after its test. (The SGLang 0.5.8
and VoxBox stand-ins stay beside the vLLM one: SGLang's shares its torch layer.)"""

from __future__ import annotations

import pytest

from runner.compose.stages import dependencies_first
from tests.e2e import standin
from tests.e2e.test_real_services import DP_PORTS, _every_gpustack_start_passes, _only_stand_in_gaps, _smoke

pytestmark = [pytest.mark.e2e, pytest.mark.realservice]


# The newest rows the matrix lists layer the official images (runner.compose.official). Their stand-ins
# hold what those images hold that the index has: the service at the row's release with the torch it
# pins and, for vLLM, LMCache (vLLM's CUDA release image installs its requirements/kv_connectors.txt;
# NIXL, CuPy and Mooncake from that file are left out here, no deployment of GPUStack's names them);
# then what the layered recipe adds on the image: Ray at the backend's pin and the audio extras.
def _layered_adds(project, backend: str) -> tuple[str, ...]:
    from runner.compose.official import AUDIO_EXTRAS

    return (f"ray[cgraph,client,default]=={project.recipes[backend].module.OFFICIAL.ray}", *AUDIO_EXTRAS)


def _newest(project, service: str) -> str:
    from packaging.version import Version

    rows = [t for t in project.targets if t.backend == "cuda" and t.service == service]
    newest = max(rows, key=lambda t: (Version(t.service_version), Version(t.original_backend_version)))
    assert project.recipes["cuda"].module.OFFICIAL.layers(newest)  # the newest rows layer the official image
    return newest.tag


def _newest_standin(project, service: str) -> standin.Standin:
    tag = _newest(project, service)
    version = project.target(tag).service_version
    if service == "vllm":
        return standin.Standin("vllm-newest", tag, (f"vllm=={version}", "lmcache>=0.3.9", *_layered_adds(project, "cuda")))
    # SGLang pins a beta of flash-attn-4 (named here, so the resolver takes it) and one of cuda-tile,
    # which the index has only as an sdist that needs the CUDA toolkit to build: left out, pip check names it
    return standin.Standin("sglang-newest", tag, (f"sglang=={version}", "flash-attn-4>=4.0.0b18",
                                                   *_layered_adds(project, "cuda")),
                           driver_stub=True, leave_out=("cuda-tile",))


def planned_standins(project) -> list[standin.Standin]:
    """The stand-ins this module builds, in the order it builds them (the session prefetches their wheels)."""
    return [_newest_standin(project, service) for service in ("vllm", "sglang")]


@pytest.mark.parametrize("service", ["vllm", "sglang"])
def test_the_newest_rows_pass_their_specs_on_stand_ins_of_the_official_images(e2e, project, service):
    """The newest vLLM and SGLang rows of the matrix: the project's smoke spec and every start GPUStack
    2.3.0 makes from the image, on the service's real release from the package index."""
    found = _newest_standin(project, service)
    image = standin.build(e2e, found, standin.recipe_env(project, found.target))
    try:
        report, _ = _smoke(e2e, image, found.target, found.name)
        checks = {c["name"]: c for c in report["smoke"]["checks"]}
        for name in ("entrypoint", "tini", "import-version", "consumer-deployments", "environment", "no-prereleases"):
            assert checks[name]["passed"], (name, checks[name]["reason"], checks[name]["excerpt"][-3000:])
        assert f"{service} {project.target(found.target).service_version}" in checks["components"]["excerpt"]
        _only_stand_in_gaps(report, found.name, also={"pip-check"} if found.leave_out else set())
        pip_check = checks["pip-check"]
        if found.leave_out:  # what the stand-in leaves out, and only that, is missing
            broken = [line for line in pip_check["excerpt"].splitlines() if " requires " in line or " has requirement " in line]
            assert broken and all(any(f" requires {n}" in line for n in found.leave_out) for line in broken), pip_check["excerpt"]
        else:
            assert pip_check["passed"], pip_check["excerpt"][-3000:]
        covered = _every_gpustack_start_passes(checks, project, found.target)
        if service == "vllm":  # every kind of start GPUStack 2.3.0 makes from a vLLM image, LMCache's included
            assert {"single", "tp", "ray-leader", "ray-follower", "mp-leader", "mp-follower", "kv-cache", "lora",
                    "speculative-eagle3"} <= covered
            # the data-parallel ports the project patches in vLLM 0.11.2..0.14.1 come out distinct from the
            # newest vLLM unpatched: the row carries no patch (its plan applies none)
            leaf = project.leaf_stage(found.target, "linux/amd64")
            assert not [s.title for st in dependencies_first(leaf) for s in st.steps if "patch" in getattr(s, "title", "")]
            out = e2e.docker("run", "--rm", "-e", "VLLM_PORT=45000", "-e", f"DP={DP_PORTS}", image, "sh", "-c",
                             'timeout 120 python3 -c "$DP"; echo "exit $?"', timeout=300).stdout
            assert "exit 0" in out and "[45000, 45001, 45002, 45003, 45004]" in out, out[-2000:]
        else:
            assert {"single", "tp", "sglang-leader", "sglang-follower", "kv-cache", "lora"} <= covered
    finally:
        standin.remove(e2e, image)
