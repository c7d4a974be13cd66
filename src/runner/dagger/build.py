"""The Build object of the Dagger module and the registry functions: the shared pipeline driven
through the Dagger engine."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import dagger
from dagger import Doc, dag, field, function, object_type
from dagger.mod._exceptions import FunctionError

from runner.release import pipeline, publish as flow
from runner.release.report import report
from runner.model.catalog import PACKAGED, dump, load, records
from runner.engines.dagger import AUTHFILE, DaggerBuilder, StageContainers, skopeo_runner
from runner.dagger.args import Catalog, Insecure, Namespace, Password, Registry, Repository, Username
from runner.model.errors import UserError
from runner.compose.plan import make_plan
from runner.compose.project import Project, load_project
from runner.release.registry import Skopeo
from runner.model.targets import Selection, Target

def _selection_json(s: Selection) -> str:
    return json.dumps(asdict(s))


def _plan(selection_json: str):
    project = load_project()
    selection = Selection(**json.loads(selection_json))
    try:
        return project, make_plan(project.select(selection), project.recipes)
    except UserError as e:
        raise FunctionError(str(e)) from None


@object_type
class Build:
    """Images built and smoke-tested by `build`: print it for a summary, or chain publish, promote, export, report."""

    selection: Annotated[str, Doc("the selection that was built (JSON)")] = field()
    images: Annotated[list[dagger.Container], Doc("one image per target and platform, in plan order")] = field()
    results: Annotated[str, Doc("build and smoke results per target and platform (JSON)")] = field()
    source_url: str = field(default="")
    revision: str = field(default="")

    @function
    def report(self) -> str:
        """JSON per target and platform: digest, size, build time and each smoke check with an output excerpt."""
        return self.results

    @function
    def summary(self) -> str:
        """One line per target and platform: passed or failed, and what failed."""
        lines = []
        for r in json.loads(self.results)["images"]:
            state = "passed" if r["smoke"]["passed"] else "FAILED " + (r["error"][:200] or ", ".join(r["smoke"]["failed"]))
            lines.append(f"{r['tag']:<42} {r['platform']:<12} {r['build_seconds']:>8.1f}s  {state}")
        if any(not r["smoke"]["passed"] for r in json.loads(self.results)["images"]):
            lines.append("failed tags will not be published: see `report` for each check's output, fix the recipe "
                         "or smoke spec in pack/, and build again")
        return "\n".join(lines)

    @function
    def export(self) -> dagger.Directory:
        """OCI tarballs of the built images, one per target and platform (`export --path out/`)."""
        _, plan = _plan(self.selection)
        out = dag.directory()
        for leaf, image in zip(plan.leaves, self.images):
            out = out.with_file(f"{leaf.target.tag}-{leaf.platform.replace('/', '-')}.tar", image.as_tarball())
        return out

    @function(cache="never")
    async def publish(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "gpustack",
        repository: Repository = "runner",
        single_arch_only: Annotated[bool, Doc("push single-arch images only; a `merge` job makes the indexes")] = False,
    ) -> str:
        """Push single-arch images and multi-arch -dev indexes; a tag whose platforms did not all pass publishes nothing."""
        project, plan = _plan(self.selection)
        built = self._built(plan)
        builder = DaggerBuilder(StageContainers(), registry, username, password)
        pubs = await flow.publish(built, builder, _image_of(registry, namespace, repository), index=not single_arch_only)
        return json.dumps(report(built, pubs)["published"], indent=1)

    @function(cache="never")
    async def promote(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "gpustack",
        repository: Repository = "runner",
        catalog: Catalog = None,
        insecure: Insecure = False,
    ) -> dagger.File:
        """Copy each tested -dev index to its final tag by digest (no rebuild); returns the updated catalog."""
        _, plan = _plan(self.selection)
        targets = list(dict.fromkeys(leaf.target for leaf in plan.leaves))
        return await promote_targets(targets, registry, username, password, namespace, repository, catalog, insecure)

    def _built(self, plan) -> list[pipeline.Built]:
        by_key = {(r["tag"], r["platform"]): r for r in json.loads(self.results)["images"]}
        built = []
        for leaf, image in zip(plan.leaves, self.images):
            r = by_key[(leaf.target.tag, leaf.platform)]
            b = pipeline.Built(leaf, image, seconds=r["build_seconds"], error=r["error"])
            b.checks = [pipeline.CheckResult(**c) for c in r["smoke"]["checks"]]
            built.append(b)
        return built


def _registry(registry: str, username: str, password: dagger.Secret, namespace: str, repository: str, insecure: bool):
    """Skopeo in a container with the secret's credentials, and the image reference of a tag."""
    regops = Skopeo(skopeo_runner(password, registry, username, insecure), tls_verify=not insecure, authfile=AUTHFILE)
    return regops, _image_of(registry, namespace, repository)


def _image_of(registry: str, namespace: str, repository: str):
    return lambda tag: f"{registry}/{namespace}/{repository}:{tag}"


async def promote_targets(targets, registry: str, username: str, password: dagger.Secret, namespace: str,
                          repository: str, catalog: dagger.File | None, insecure: bool) -> dagger.File:
    """pipeline.promote through skopeo in a container; the updated catalog comes back as a File."""
    regops, image_of = _registry(registry, username, password, namespace, repository, insecure)
    return await _with_catalog(catalog, lambda path: flow.promote(
        targets, regops, image_of, path, lambda ts: records(ts, lambda tag: f"{namespace}/{repository}:{tag}")))


async def merge_targets(targets, registry: str, username: str, password: dagger.Secret, namespace: str,
                        repository: str, insecure: bool) -> str:
    """pipeline.merge: -dev indexes from single-arch tags pushed by per-platform jobs."""
    regops, image_of = _registry(registry, username, password, namespace, repository, insecure)
    builder = DaggerBuilder(StageContainers(), registry, username, password)
    pubs = await flow.merge(targets, builder, regops, image_of)
    return json.dumps([{"tag": p.tag, "dev": p.dev_ref, "digest": p.digest, "skipped": p.skipped} for p in pubs], indent=1)


async def run_build(selection: Selection, concurrency: int, gpu: bool, source_url: str, revision: str,
                    build_info: dict[str, str]) -> Build:
    """`Runner.build`: plan, build each distinct stage once, smoke-test, and wrap it all in a Build."""
    project, plan = _plan(_selection_json(selection))
    builder = DaggerBuilder(StageContainers(build_info))
    built = await pipeline.build_all(plan, builder, project.pack_path, concurrency, gpu=gpu)
    return Build(selection=_selection_json(selection), images=[b.handle or dag.container() for b in built],
                 results=json.dumps(report(built)), source_url=source_url, revision=revision)


async def registry_ops(op: str, project: Project, targets: list[Target], registry: str, namespace: str, username: str,
                       password: dagger.Secret, catalog: dagger.File | None, intermediates: bool = False) -> dagger.File:
    """discard (the targets) or prune through skopeo in a container; returns the catalog with the removed
    images dropped."""
    regops, image_of = _registry(registry, username, password, namespace, project.repository, False)
    if op == "discard":
        return await _with_catalog(catalog, lambda path: flow.discard(targets, regops, image_of, path))
    repo = f"{registry}/{namespace}/{project.repository}"
    known = {t.tag for t in project.targets}
    return await _with_catalog(catalog, lambda path: flow.prune(repo, regops, known, project.parser.parse, path, intermediates))


async def _with_catalog(catalog: dagger.File | None, action) -> dagger.File:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.json"
        path.write_text(await catalog.contents() if catalog else dump(load(PACKAGED)))
        await action(path)
        return dag.directory().with_new_file("catalog.json", path.read_text()).file("catalog.json")
