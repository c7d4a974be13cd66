"""Builds, smoke-tests and publishes GPUStack Runner inference-service images from one validated matrix.

Every function reads matrix.yaml and pack/ from this module's source; `dagger call build --backend cann`
is the whole job for Ascend CANN.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated

import dagger
from dagger import Doc, function, object_type
from dagger.mod._exceptions import FunctionError

from runner.dagger.build import Build
from runner.dagger.args import BackendVersion, Catalog, IncludeDeprecated, Insecure, Namespace, Password, Platform, Registry, ServiceName, ServiceVersion, Tag, Username, Variant
from runner.model.errors import UserError
from runner.compose.project import Project, load_project
from runner.model.targets import Selection

def _backend_enum() -> type[dagger.Enum]:
    """The Backend enum, made from pack/*/recipe.py so that a new backend needs no edit here. Each
    member's description is the first words of its recipe's docstring (e.g. "NVIDIA CUDA")."""
    import ast

    from runner.compose.project import default_matrix_path

    members = {}
    for recipe in sorted((default_matrix_path().parent / "pack").glob("*/recipe.py")):
        doc = ast.get_docstring(ast.parse(recipe.read_text())) or recipe.parent.name
        members[recipe.parent.name.upper()] = (recipe.parent.name, doc.split(":", 1)[0].strip())
    backend = enum.Enum("Backend", {name: value for name, (value, _) in members.items()}, module=__name__)
    backend.__doc__ = "An accelerated backend of the matrix (one per pack/<backend>/recipe.py)."
    for name, (_, title) in members.items():
        backend[name].description = title  # the SDK reads a member's `description`
    return dagger.enum_type(backend)


Backend = _backend_enum()
OptBackend = Annotated[Backend | None, Doc("only this backend")]


@dagger.enum_type
class MatrixFormat(enum.Enum):
    """How `matrix` prints the selection."""

    TABLE = "table"
    """a table for people"""
    JSON = "json"
    """a JSON list of targets"""
    GITHUB = "github"
    """strategy.matrix for GitHub Actions: one job per target and platform"""
    GITLAB = "gitlab"
    """parallel:matrix for GitLab CI: one job per target and platform"""


@dagger.enum_type
class DockerfileForm(enum.Enum):
    """Dockerfile flavour."""

    HEREDOC = "heredoc"
    """RUN <<EOF heredocs (Dockerfile 1.4 and later)"""
    COMPAT = "compat"
    """no heredocs, for built-in frontends such as Docker 20.10's"""


def _selection(backend: Backend | None, backend_version: str, variant: str, service: str,
               service_version: str, platform: str, include_deprecated: bool) -> Selection:
    return Selection(backend.value if backend else "", backend_version, variant, service, service_version, platform,
                     include_deprecated)


def _project() -> Project:
    return load_project()


def _fail(e: UserError) -> Exception:
    """User mistakes surface as one clear message: the SDK reports a FunctionError without a traceback."""
    return FunctionError(str(e))


@object_type
class Runner:
    """GPUStack Runner images: the matrix, its stage plan, builds with smoke tests, and releases."""

    source_url: Annotated[str, Doc("org.opencontainers.image.source of the images")] = "https://github.com/gpustack/runner"
    revision: Annotated[str, Doc("org.opencontainers.image.revision: the recipe commit")] = ""

    @function
    def matrix(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        format: Annotated[MatrixFormat, Doc("table, json, github or gitlab")] = MatrixFormat.TABLE,
    ) -> str:
        """The selected targets as a table, as JSON, or as a CI fan-out matrix (one job per target and platform)."""
        from runner.release import fanout
        from runner.ui.selection import target_json

        targets = self._targets(backend, backend_version, variant, service, service_version, platform, include_deprecated)
        if format == MatrixFormat.JSON:
            return json.dumps([target_json(t) for t in targets], indent=1)
        if format == MatrixFormat.GITHUB:
            return json.dumps(fanout.github(targets))
        if format == MatrixFormat.GITLAB:
            return json.dumps(fanout.gitlab(targets))
        return "\n".join(f"{t.tag:<40} {t.status:<10} {' '.join(t.platforms)}" for t in targets)

    @function
    def plan(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        service_version: ServiceVersion = "",
        include_deprecated: IncludeDeprecated = False,
    ) -> str:
        """The stage DAG of the selection as JSON: distinct stages (shared across targets) and the naive count."""
        from runner.compose.plan import make_plan

        project = _project()
        targets = self._targets(backend, backend_version, "", service, service_version, "", include_deprecated, project)
        return json.dumps(make_plan(targets, project.recipes).to_json(), indent=1)

    @function
    def dockerfile(
        self,
        tag: Tag,
        platform: Annotated[str, Doc("platform; default: the target's first")] = "",
        form: Annotated[DockerfileForm, Doc("heredoc or compat")] = DockerfileForm.HEREDOC,
    ) -> str:
        """One target's stages rendered as a multi-stage Dockerfile (seed 000's convention)."""
        from runner.compose.dockerfile import render

        return render(self._leaf_stage(tag, platform), form.value).text

    @function
    def base(self, tag: Tag, platform: Annotated[str, Doc("platform")] = "") -> dagger.Container:
        """The vendor base image of a target on one platform."""
        return self._stage_container(tag, platform, "base")

    @function
    def runtime(self, tag: Tag, platform: Annotated[str, Doc("platform")] = "") -> dagger.Container:
        """The shared runtime stage of a target on one platform, for cache-warm iteration (try `terminal`)."""
        return self._stage_container(tag, platform, "runtime")

    @function
    def service(self, tag: Tag, platform: Annotated[str, Doc("platform")] = "") -> dagger.Container:
        """The finished service image of a target on one platform, unpublished."""
        return self._stage_container(tag, platform, "service")

    @function(cache="never")
    async def build(
        self,
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        variant: Variant = "",
        service_version: ServiceVersion = "",
        platform: Platform = "",
        include_deprecated: IncludeDeprecated = False,
        concurrency: Annotated[int, Doc("images built and tested at once")] = 4,
        gpu: Annotated[bool, Doc("also run the backend's device check on an accelerator (NVIDIA through Dagger)")] = False,
    ) -> Build:
        """Build every selected target on each of its platforms, sharing stages, then smoke-test each image."""
        from runner.dagger.build import run_build

        selection = _selection(backend, backend_version, variant, service, service_version, platform, include_deprecated)
        return await run_build(selection, concurrency, gpu, self.source_url, self.revision, self.build_info())

    @function(cache="never")
    async def discard(
        self,
        registry: Registry,
        password: Password,
        username: Username,
        namespace: Namespace = "gpustack",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        service_version: ServiceVersion = "",
        catalog: Catalog = None,
    ) -> dagger.File:
        """Delete every tag (final, -dev, single-arch) of the selected targets; returns the updated catalog."""
        from runner.dagger.build import registry_ops

        project = _project()
        targets = self._targets(backend, backend_version, "", service, service_version, "", True, project)
        return await registry_ops("discard", project, targets, registry, namespace, username, password, catalog)

    @function(cache="never")
    async def prune(
        self,
        registry: Registry,
        password: Password,
        username: Username,
        namespace: Namespace = "gpustack",
        intermediates: Annotated[bool, Doc("also delete -dev and single-arch tags of promoted targets")] = False,
        catalog: Catalog = None,
    ) -> dagger.File:
        """Delete runner tags the matrix no longer has (and intermediates); returns the updated catalog."""
        from runner.dagger.build import registry_ops

        return await registry_ops("prune", _project(), [], registry, namespace, username, password, catalog,
                                  intermediates=intermediates)

    @function(cache="never")
    async def merge(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "gpustack",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        service_version: ServiceVersion = "",
        insecure: Insecure = False,
    ) -> str:
        """Assemble -dev indexes from single-arch tags pushed by per-platform CI jobs, for tags whose platforms all passed."""
        from runner.dagger.build import merge_targets

        project = _project()
        targets = self._targets(backend, backend_version, "", service, service_version, "", False, project)
        return await merge_targets(targets, registry, username, password, namespace, project.repository, insecure)

    @function(cache="never")
    async def promote(
        self,
        registry: Registry,
        username: Username,
        password: Password,
        namespace: Namespace = "gpustack",
        backend: OptBackend = None,
        service: ServiceName = "",
        backend_version: BackendVersion = "",
        service_version: ServiceVersion = "",
        catalog: Catalog = None,
        insecure: Insecure = False,
    ) -> dagger.File:
        """Copy each tested -dev index to its final tag by digest, without building; returns the updated catalog."""
        from runner.dagger.build import promote_targets

        project = _project()
        targets = self._targets(backend, backend_version, "", service, service_version, "", False, project)
        return await promote_targets(targets, registry, username, password, namespace, project.repository,
                                     catalog, insecure)

    # helpers (not Dagger functions)

    def _targets(self, backend, backend_version, variant, service, service_version, platform, include_deprecated,
                 project: Project | None = None):
        project = project or _project()
        selection = _selection(backend, backend_version, variant, service, service_version, platform, include_deprecated)
        try:
            return project.select(selection)
        except UserError as e:
            raise _fail(e) from None

    def _leaf_stage(self, tag: str, platform: str):
        try:
            return _project().leaf_stage(tag, platform)
        except UserError as e:
            raise _fail(e) from None

    def _stage_container(self, tag: str, platform: str, kind: str) -> dagger.Container:
        from runner.engines.dagger import StageContainers

        leaf = self._leaf_stage(tag, platform)
        stage = next(s for s in reversed(leaf.chain()) if s.kind == kind)
        return StageContainers(self.build_info()).container(stage)

    def build_info(self) -> dict[str, str]:
        import datetime

        return {"source": self.source_url, "revision": self.revision,
                "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

__all__ = ["Backend", "Build", "DockerfileForm", "MatrixFormat", "Runner"]
