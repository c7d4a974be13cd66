"""A push or index write that fails (after the engine's and the registry client's own retries) is one
tag's failure: recorded with its message, the -dev index of that tag not written, the other tags
published, and nothing raised past the report."""

from __future__ import annotations

import pytest

from pathlib import Path

import anyio

from runner.compose.plan import make_plan
from runner.compose.project import load_project
from runner.release import publish as flow
from runner.release.pipeline import BuildError, Built
from runner.release.registry import RegistryError
from runner.verify.smoke import CheckResult

FIXTURE = Path(__file__).parent / "fixtures" / "e2e" / "matrix.yaml"


class Engine:
    """Pushes succeed but for the refs named in `broken`."""

    def __init__(self, broken: str) -> None:
        self.broken, self.pushed = broken, []

    async def push(self, handle: str, ref: str) -> str:
        if self.broken in ref:
            raise BuildError(f"docker push {ref} failed: unavailable: injected")
        self.pushed.append(ref)
        return "sha256:" + format(len(self.pushed), "064x")


class Registry:
    """Holds index writes; refuses those whose tag contains `broken`."""

    def __init__(self, broken: str = "") -> None:
        self.broken, self.indexes = broken, {}

    async def index_manifest(self, repo: str, members) -> tuple[bytes, str]:
        return repr(members).encode(), "application/vnd.oci.image.index.v1+json"

    async def manifest(self, repo: str, tag: str):
        return None

    async def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        if self.broken and self.broken in tag:
            raise RegistryError(f"write {repo}:{tag}", 503, "injected")
        self.indexes[tag] = body
        return "sha256:" + "f" * 64


def _built() -> tuple[list[Built], dict[str, list[str]]]:
    project = load_project(FIXTURE)
    plan = make_plan(project.targets, project.recipes)
    ok = [CheckResult("run", True, 0, "", "")]
    built = [Built(leaf, handle=f"img-{leaf.target.tag}-{leaf.platform}", checks=ok) for leaf in plan.leaves]
    return built, {t.tag: t.platforms for t in project.targets}


def _publish(engine: Engine, registry: Registry) -> list[flow.Publication]:
    built, platforms = _built()
    repo = flow.Repository("registry.example:5000", "ns", "runner")
    return anyio.run(lambda: flow.publish(built, engine, registry, repo, platforms))


def test_a_failed_push_is_that_tags_error_and_the_others_are_published():
    engine, registry = Engine(broken="echo0.2.0-linux-arm64"), Registry()
    pubs = {p.tag: p for p in _publish(engine, registry)}
    broken = next(t for t in pubs if "echo0.2.0" in t)
    assert "injected" in pubs[broken].error and "run the same command again" in pubs[broken].skipped
    assert not pubs[broken].dev_ref and not any(broken in tag for tag in registry.indexes)
    others = [p for t, p in pubs.items() if t != broken]
    assert others and all(not p.error and p.dev_ref for p in others)
    assert all(t + "-dev" in "".join(registry.indexes) for t in pubs if t != broken)


def test_a_failed_index_write_is_that_tags_error():
    pubs = {p.tag: p for p in _publish(Engine(broken="nothing"), Registry(broken="echo0.1.0"))}
    failed = [t for t, p in pubs.items() if p.error]
    assert len(failed) == 1 and "echo0.1.0" in failed[0] and "HTTP 503" in pubs[failed[0]].error
    assert sum(bool(p.dev_ref) for p in pubs.values()) == len(pubs) - 1


@pytest.mark.parametrize("op", ["merge", "promote", "discard"])
def test_one_platform_of_a_multi_arch_tag_is_refused_with_the_reason(op, tmp_path):
    """merge, promote and discard act on whole tags: `--platform` would write a one-platform -dev index,
    under-list the catalog or delete every platform's tags, so it is refused before anything is read."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "runner", op, "--registry", "127.0.0.1:9", "--username", "u",
                           "--platform", "linux/amd64", "--backend", "cuda"], capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "REGISTRY_PASSWORD": "x", "RUNNER_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert "whole multi-arch tags" in done.stderr and "linux/amd64" in done.stderr and "Traceback" not in done.stderr
