"""`runner official`: the digests the official images build from, `--lock` against a real registry
(Debian's docker-registry, reached through the mirror map as a mirror of the image's own registry), and
a release that refuses a row whose official image no digest pins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import anyio
import pytest

from runner.compose.official import LOCK_NAME
from runner.compose.project import load_project
from runner.flow.official_lock import official_images, require_pinned, unpinned
from runner.model.errors import UserError
from runner.model.targets import Selection
from tests.conftest import ROOT
from tests.e2e import infra

IMAGE = "vllm/vllm-openai:v0.32.0-ubuntu2404"


@pytest.fixture
def copy(tmp_path):
    """The project's matrix and pack, to lock into."""
    shutil.copy(ROOT / "matrix.yaml", tmp_path / "matrix.yaml")
    shutil.copytree(ROOT / "pack", tmp_path / "pack", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.fixture
def open_registry(tmp_path_factory):
    """A registry without accounts, as a public mirror answers reads."""
    if not infra.have("docker-registry"):
        pytest.fail("this test needs Debian's docker-registry (.ci/run installs it)")
    root = tmp_path_factory.mktemp("open-registry")
    port = infra.free_port()
    (root / "registry.yml").write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: "
                                       f"{{rootdirectory: {root}/data}}\nhttp: {{addr: \"127.0.0.1:{port}\"}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "registry.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        infra.wait_for(lambda: infra.port_open(port), "the registry")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _push(host: str, repo: str, tag: str) -> str:
    from runner.release.registry import Registry

    async with Registry(host) as reg:
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        digest = await reg.upload_blob(repo, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                                          "size": len(config)}, "layers": []}).encode()
        return await reg.put_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")


def _runner(cwd, *args, **env):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RUNNER_NO_CACHE": "1", **env})


def test_lock_records_what_the_registry_answers_and_says_what_it_could_not_check(copy, open_registry):
    pushed = anyio.run(_push, open_registry, "vllm/vllm-openai", "v0.32.0-ubuntu2404")
    done = _runner(copy, "official", "--backend", "cuda", "--service", "vllm", "--service-version", "0.32.0", "--lock",
                   "--format", "json", RUNNER_MIRRORS=f"docker.io/vllm={open_registry}/vllm")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    shown = {o["image"]: o["digest"] for o in json.loads(done.stdout)["images"]}
    assert shown == {IMAGE: pushed, "vllm/vllm-openai:v0.32.0-cu129-ubuntu2404": None}
    assert "not checked here: vllm/vllm-openai:v0.32.0-cu129-ubuntu2404" in done.stderr and "no such tag" in done.stderr
    text = (copy / "pack" / "cuda" / LOCK_NAME).read_text()
    assert f"{IMAGE}: {pushed}\n" in text and "vllm/vllm-openai:v0.32.0-cu129-ubuntu2404: null\n" in text
    project = load_project(copy / "matrix.yaml", copy / "pack")
    leaf = project.leaf_stage("cuda13.0-vllm0.32.0", "linux/amd64")
    assert leaf.chain()[0].image == f"{IMAGE}@{pushed}"  # the digest is what builds; the tag is shown
    # a registry that does not answer: said, and the lock keeps what it had
    again = _runner(copy, "official", "--backend", "cuda", "--service-version", "0.32.0", "--lock", "--refresh",
                    RUNNER_MIRRORS=f"docker.io/vllm=127.0.0.1:{infra.free_port()}/vllm")
    assert again.returncode == 0 and "did not answer" in again.stderr, again.stderr
    assert (copy / "pack" / "cuda" / LOCK_NAME).read_text() == text


def test_a_release_refuses_rows_whose_official_image_is_not_pinned(copy):
    project = load_project(copy / "matrix.yaml", copy / "pack")
    layered = Selection(backend="cuda", service="vllm", service_version="0.32.0").apply(project.targets)
    assert {o.image for o in unpinned(project, layered)} == {IMAGE, "vllm/vllm-openai:v0.32.0-cu129-ubuntu2404"}
    with pytest.raises(UserError, match="2 official image.s. the selection layers are not pinned by digest") as e:
        require_pinned(project, layered)
    assert "runner official --lock" in (e.value.hint or "")
    require_pinned(project, Selection(backend="cuda", service="vllm", service_version="0.14.1").apply(project.targets))
    lines = [f"{o.image}: sha256:{'0' * 63}{i}" for i, o in enumerate(official_images(project, layered))]
    (copy / "pack" / "cuda" / LOCK_NAME).write_text("\n".join(lines) + "\n")
    from runner.compose import official

    official._lock.cache_clear()
    require_pinned(load_project(copy / "matrix.yaml", copy / "pack"), layered)  # pinned now: no refusal
    official._lock.cache_clear()


def test_runner_plan_says_how_many_official_images_are_not_pinned():
    done = _runner(ROOT, "plan", "--backend", "rocm", "--backend-version", "7.2.3")
    assert done.returncode == 0, done.stderr
    assert "not pinned: 7 official images the selection layers have no digest" in done.stderr
