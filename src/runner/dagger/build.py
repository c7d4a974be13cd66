"""What `images` returns: every target and platform built and smoke-tested, each image with its own tag
and platform, to chain `summary`, `report` or `tarballs` on (`with-registry ... publish` pushes them)."""

from __future__ import annotations

import json
from typing import Annotated

import dagger
from dagger import Doc, dag, field, function, object_type

from runner.dagger import checkout
from runner.flow import on_dagger
from runner.flow.on_dagger import Signing
from runner.model.errors import Failed
from runner.model.targets import Selection
from runner.ui.failures import failure_lines
from runner.ui.selection import selection_from_json, selection_json, summary_lines


@object_type
class BuiltImage:
    """One target on one platform: its image, when it built, and its build and smoke results."""

    tag: Annotated[str, Doc("multi-arch tag of the target")] = field()
    platform: Annotated[str, Doc("platform of this image")] = field()
    passed: Annotated[bool, Doc("built, and every smoke check passed")] = field()
    result: Annotated[str, Doc("build and smoke results (JSON)")] = field()
    container: Annotated[dagger.Container | None, Doc("the image; none when the build failed")] = field(default=None)


@object_type
class Build:
    """Images built and smoke-tested by `images`: chain summary, report or tarballs."""

    source: Annotated[dagger.Directory, Doc("the project that was built")] = field()
    selection: Annotated[str, Doc("the selection that was built (JSON)")] = field()
    images: Annotated[list[BuiltImage], Doc("one image per target and platform")] = field()
    build_info: Annotated[str, Doc("OCI source, revision and created labels (JSON)")] = field(default="{}")

    @function
    def report(self) -> str:
        """Return build and smoke results as JSON, per target and platform, whatever failed.

        Each image has its build time and error, and each smoke check its command, exit code, duration
        and output excerpt."""
        return json.dumps({"images": [json.loads(i.result) for i in self.images],
                           "passed": sum(i.passed for i in self.images),
                           "failed": sum(not i.passed for i in self.images)}, indent=1)

    @function
    def summary(self) -> str:
        """One line per target and platform; ends with an error listing what failed, if anything did."""
        return summarize([json.loads(i.result) for i in self.images])

    @function
    def tarballs(self) -> dagger.Directory:
        """Return OCI tarballs of the images that built and passed, one per target and platform.

        Export them with `tarballs export --path out/` (or `tarballs -o out/`)."""
        out = dag.directory()
        for i in self.images:
            if i.passed and i.container is not None:
                out = out.with_file(f"{i.tag}-{i.platform.replace('/', '-')}.tar", i.container.as_tarball())
        return out

    def as_built(self, project) -> list:
        """The pipeline's records of these images, each found by its own tag and platform."""
        return on_dagger.rebuilt_records(project, selection_from_json(self.selection),
                                         [(i.tag, i.platform, i.container, json.loads(i.result)) for i in self.images])


def built_images(built: list) -> list[BuiltImage]:
    """The face's view of the pipeline's records: one BuiltImage per target and platform."""
    return [BuiltImage(tag=b.target.tag, platform=b.platform, passed=b.passed, result=json.dumps(b.report()),
                       container=b.handle if not b.error else None) for b in built]


def summarize(results: list[dict]) -> str:
    """The summary text; a Failed error carrying it when anything failed (so `dagger call` exits non-zero)."""
    lines = summary_lines({"images": results})
    if any(not r["smoke"]["passed"] for r in results):
        lines += ["", *failure_lines(results), "see `report` for each check's output"]
        raise Failed("\n".join(lines))
    return "\n".join(lines)


async def run_images(source: dagger.Directory, selection: Selection, concurrency: int, gpu: bool,
                     build_info: dict[str, str]) -> Build:
    """Plan the selection, build each distinct stage once, smoke-test every image."""
    project = await checkout.load(source)
    built = await on_dagger.build(project, selection, concurrency, gpu, build_info)
    return Build(source=source, selection=selection_json(selection), images=built_images(built),
                 build_info=json.dumps(build_info))


async def run_job(source: dagger.Directory, key: str, selection: str, cache_ref: str, registry: str, username: str,
                  password: dagger.Secret | None, run: str, dry_run: bool, emulate: bool, namespace: str,
                  repository: str, build_info: dict[str, str], signing: Signing = Signing()) -> str:
    """One CI job on the engine, planned in the selection its matrix emitted (runner.flow.on_dagger.job)."""
    project = await checkout.load(source)
    to = await on_dagger.access(registry, username, password, False, namespace, repository)
    return json.dumps(await on_dagger.job(project, key, Selection.from_json(selection), cache_ref, to, run, dry_run,
                                          emulate, build_info, signing))
