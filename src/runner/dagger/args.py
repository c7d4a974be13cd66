"""Argument types of the Dagger functions, written once: their docs are what `dagger call --help` shows."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore

Source = Annotated[
    dagger.Directory,
    Doc("the project to build: matrix.yaml and pack/ (default: this checkout; pass another to build a fork)"),
    DefaultPath("/"),
    Ignore(["*", "!matrix.yaml", "!pack", "pack/**/__pycache__"]),
]
ServiceName = Annotated[str, Doc("only this service, e.g. vllm")]
BackendVersion = Annotated[str, Doc("backend version, exact or dotted prefix (12.8, 12)")]
ServiceVersion = Annotated[str, Doc("service version, exact or dotted prefix (0.14)")]
Variant = Annotated[str, Doc("backend variant, e.g. 910b")]
Platform = Annotated[str, Doc("only this platform, e.g. linux/arm64")]
BackendVersionPrefix = Annotated[str, Doc("backend version by gpustack-runner's prefix rule (list_runners' "
                                          "backend_version_prefix)")]
ServiceVersionPrefix = Annotated[str, Doc("service version by gpustack-runner's prefix rule (list_runners' "
                                          "service_version_prefix)")]
SelectTags = Annotated[str, Doc("only tags matching one of these glob patterns, space-separated, e.g. "
                                "'cuda12.*-vllm0.14*'")]
SkipTags = Annotated[str, Doc("leave out tags matching one of these glob patterns, space-separated, e.g. '*-dev rocm*'")]
IncludeDeprecated = Annotated[bool, Doc("include deprecated service versions (left out by default, as by `runner`)")]
Registry = Annotated[str, Doc("registry host the engine can reach, e.g. docker.io; not 127.0.0.1, which is the "
                              "engine's own loopback: use the host's address for a registry on this machine")]
Username = Annotated[str, Doc("registry user")]
Password = Annotated[dagger.Secret, Doc("registry password or token, e.g. env://REGISTRY_PASSWORD")]
OptPassword = Annotated[dagger.Secret | None, Doc("registry password or token, e.g. env://REGISTRY_PASSWORD (none: "
                                                  "anonymous, enough for reads; pushes and deletes need one)")]
Namespace = Annotated[str, Doc("image namespace (default: the matrix's)")]
Repository = Annotated[str, Doc("image repository (default: the matrix's)")]
Catalog = Annotated[dagger.File | None, Doc("catalog to update (default: the packaged one)")]
Insecure = Annotated[bool, Doc("plain-HTTP registry (a local test registry)")]
Tag = Annotated[str, Doc("target tag, e.g. cuda12.8-vllm0.14.1")]
SigningKey = Annotated[dagger.Secret | None, Doc("PEM private key that signs each pushed image's provenance, e.g. "
                                                 "env://RUNNER_SIGNING_KEY (air-gapped sites)")]
SigstoreToken = Annotated[dagger.Secret | None, Doc("OIDC token to sign keyless with Sigstore, e.g. "
                                                    "env://SIGSTORE_ID_TOKEN (GitLab's id_tokens)")]
OidcRequestToken = Annotated[dagger.Secret | None, Doc("GitHub Actions: env://ACTIONS_ID_TOKEN_REQUEST_TOKEN, to sign "
                                                       "keyless with a token asked for when signing")]
OidcRequestUrl = Annotated[str, Doc("GitHub Actions: $ACTIONS_ID_TOKEN_REQUEST_URL (with --oidc-request-token)")]
Concurrency = Annotated[int, Doc("images built and tested at once")]
Gpu = Annotated[bool, Doc("also run the backend's device check: NVIDIA only, with the engine started with "
                          "_EXPERIMENTAL_DAGGER_GPU_SUPPORT=1 on a host with the NVIDIA container toolkit; "
                          "skipped (not failed) where the engine has no device")]


def _pack_folder() -> Path:
    """pack/ beside the installed runner source (the module includes its recipes, not the rest)."""
    import runner

    for folder in (Path(runner.__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents):
        if (folder / "pack").is_dir():
            return folder / "pack"
    return Path.cwd() / "pack"


def _backend_enum() -> type[dagger.Enum]:
    """The Backend enum, made from pack/*/recipe.py so that a new backend needs no edit here. Each
    member's description is the first words of its recipe's docstring (e.g. "NVIDIA CUDA")."""
    import ast

    members = {}
    for recipe in sorted(_pack_folder().glob("*/recipe.py")):
        doc = ast.get_docstring(ast.parse(recipe.read_text())) or recipe.parent.name
        members[recipe.parent.name.upper()] = (recipe.parent.name, doc.split(":", 1)[0].strip())
    backend = enum.Enum("Backend", {name: value for name, (value, _) in members.items()}, module=__name__)
    backend.__doc__ = "An accelerated backend of the matrix (one per pack/<backend>/recipe.py)."
    for name, (_, title) in members.items():
        backend[name].description = title  # the SDK reads a member's `description`
    return dagger.enum_type(backend)


Backend = _backend_enum()
OptBackend = Annotated[Backend | None, Doc("only this backend")]
RunId = Annotated[str, Doc("the release run (CI: GitHub's run_id, GitLab's CI_PIPELINE_ID): act only on what its "
                           "jobs recorded as tested")]
ReportFormat = Annotated[str, Doc("markdown (a GitHub step summary), junit (a GitLab test report) or json")]
SkipMissing = Annotated[bool, Doc("list and skip targets whose earlier step left nothing to work on (a failed CI "
                                  "leg, already red) instead of failing the call")]


@dagger.enum_type
class MatrixFormat(enum.Enum):
    """How `matrix` prints the selection."""

    TABLE = "table"
    """a table for people"""
    JSON = "json"
    """a JSON list of targets"""
    GITHUB = "github"
    """the CI jobs in waves, one strategy.matrix per wave for GitHub Actions"""
    GITLAB = "gitlab"
    """the CI jobs in waves, a child pipeline with a stage per wave for GitLab CI"""


@dagger.enum_type
class DockerfileForm(enum.Enum):
    """Dockerfile flavour."""

    HEREDOC = "heredoc"
    """RUN <<EOF heredocs (Dockerfile 1.4 and later)"""
    COMPAT = "compat"
    """no heredocs, for built-in frontends such as Docker 20.10's"""
