"""The schema of matrix.yaml and its validation, with errors that point at file, line and column."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.version import InvalidVersion, Version

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from runner.model.errors import ErrorList, UserError, closest
from runner.model.naming import PLATFORMS  # noqa: F401  (re-exported: the platforms a matrix may name)
from runner.model.marked_yaml import MarkedDocument, load_marked_file
from runner.model.urls import check_mirror_key

STATUSES = ("active", "deprecated", "polished")
# dotted numbers without leading zeros, ASCII digits only; a calendar month (25.04) is the one zero-padded part
_NUMBER = r"(0|[1-9][0-9]{0,8})"  # at most 9 digits: a 400-digit "version" is a mistake, not a release
_VERSION_RE = re.compile(rf"^({_NUMBER}(\.{_NUMBER})*|[1-9][0-9]\.(0[1-9]|1[0-2])(\.{_NUMBER})*)"
                         rf"(\.?(a|b|rc|post|dev){_NUMBER})*$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
_VARIANT_RE = re.compile(r"^[a-z0-9]+$")
_TEMPLATE_FIELDS = {"version", "variant", "python", "service", "service_version"}

Status = Literal["active", "deprecated", "polished"]
# archs reach build scripts (TORCH_CUDA_ARCH_LIST, PYTORCH_ROCM_ARCH, SOC_VERSION): nothing a shell reads
Arch = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]
Platform = Literal["linux/amd64", "linux/arm64"]


def check_version(value: str) -> str:
    """A version as the seed writes them: dotted numbers with an optional rc/post/dev part."""
    if not isinstance(value, str) or len(value) > 64 or not _VERSION_RE.fullmatch(value):  # "4.2.0\n" too
        raise ValueError(
            f"malformed version {value!r} (allowed: dotted numbers without leading zeros, with an optional "
            "lower-case rc/post/dev/a/b part, such as 12.8.1, 8.3.rc2, 0.5.6.post2; a calendar version "
            "may pad its month: 25.04.1)"
        )
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"malformed version {value!r}") from None
    return value


def check_template(value: str | None) -> str | None:
    """A base image reference whose {placeholders} are ones runner knows how to fill."""
    if value is None:
        return value
    import string

    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as e:
        raise ValueError(f"malformed template {value!r}: {e} (write placeholders as {{version}})") from None
    if any(spec or conv for _, name, spec, conv in parts if name is not None):
        raise ValueError(f"malformed template {value!r}: placeholders take no format spec or conversion")
    literal = "".join(text for text, *_ in parts)
    if "{" in literal or "}" in literal or not re.fullmatch(r"[A-Za-z0-9._:/@-]*", literal):
        raise ValueError(f"malformed template {value!r}: an image reference holds letters, digits and . _ : / @ - "
                         "around its {placeholders}, nothing else (no braces of its own)")
    unknown = {name for _, name, _, _ in parts if name is not None} - _TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{sorted(unknown)[0]}}} in {value!r} "
            f"(allowed: {', '.join('{' + f + '}' for f in sorted(_TEMPLATE_FIELDS))})"
        )
    return value


VersionStr = Annotated[str, AfterValidator(check_version)]
MirrorKey = Annotated[str, AfterValidator(check_mirror_key)]
ImageTemplate = Annotated[str, AfterValidator(check_template)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceVersion(_Model):
    """One service version on one backend release; a bare string is shorthand for {version: ...}."""

    version: VersionStr = Field(description="Service version as published, e.g. 0.14.1 or 0.5.6.post2.")
    status: Status = Field("active", description="active, deprecated (kept, not for new use) or polished (re-released: pull again).")
    platforms: list[Platform] | None = Field(None, description="Narrows the release's platforms.")
    archs: list[Arch] | None = Field(None, description="Narrows the release's compute architectures.")
    backend_version: VersionStr | None = Field(None, description="Full backend version this service builds on, when not the release's.")
    base_image: ImageTemplate | None = Field(None, description="Base image template, when not the release's.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"version": data} if isinstance(data, str) else data



class Release(_Model):
    """One backend version (and chip variant) with the service versions built on it."""

    version: VersionStr = Field(description="Full backend version, e.g. 12.8.1 or 8.3.rc2.")
    variant: str | None = Field(None, description="Chip variant, for backends that declare variants.")
    platforms: list[Platform] | None = Field(None, description="Overrides the backend's platforms.")
    python: str | None = Field(None, pattern=r"^3\.\d+$", description="Overrides the backend's python version.")
    base_image: ImageTemplate | None = Field(None, description="Overrides the backend's base image template.")
    base_digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$", description="Pins the base image by digest.")
    archs: list[Arch] = Field(default_factory=list, description="Compute architectures built for.")
    services: dict[str, list[ServiceVersion]] = Field(description="Service name -> versions.")



class Backend(_Model):
    """An accelerated backend: defaults for its releases, and the releases."""

    title: str = Field(description="Human name, e.g. NVIDIA CUDA.")
    python: str = Field(pattern=r"^3\.\d+$", description="Python version of the images, e.g. 3.12.")
    variants: list[str] = Field(default_factory=list, description="Chip variants; empty when the backend has none.")
    platforms: list[Platform] = Field(default_factory=lambda: list(PLATFORMS))
    base_image: ImageTemplate = Field(description="Base image template.")
    releases: list[Release]



class Matrix(_Model):
    """matrix.yaml: every image runner builds."""

    namespace: str = Field("gpustack", pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*$")
    repository: str = Field("runner", pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*$")
    mirrors: dict[MirrorKey, MirrorKey] = Field(default_factory=dict, description=(
        "URL prefix -> replacement, for indexes and downloads the recipes name (a build farm's mirror), or "
        "image prefix -> replacement for base images (docker.io/ascendai: mirror.example/ascendai); "
        "$RUNNER_MIRRORS (FROM=TO pairs) adds to and overrides it."))
    backends: dict[str, Backend]


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model whose field set applies at a validation-error location (for 'allowed keys')."""
    shape: list[tuple[type[BaseModel], int]] = [(Matrix, 0), (Backend, 2), (Release, 4), (ServiceVersion, 7)]
    depth = len(loc) - 1  # the offending key is the last element
    for model, at in shape:
        if depth == at:
            return model
    return None


def _pydantic_errors(doc: MarkedDocument, err: ValidationError) -> list[UserError]:
    found = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = doc.where(loc)
        if e["type"] == "extra_forbidden":
            model = _model_at(loc)
            found.append(UserError("unknown key", where=doc.where_key(loc), value=loc[-1], allowed=_allowed_keys(model) if model else None))
        elif e["type"] == "missing":
            found.append(UserError(f"missing key {loc[-1]!r}", where=where))
        elif e["type"] in ("model_type", "dict_type") and not loc:
            found.append(UserError("the top level must be a mapping with 'backends'", where=where, value=type(doc.data).__name__))
        elif e["type"] == "literal_error":
            found.append(UserError(f"bad value for {loc[-2] if isinstance(loc[-1], int) else loc[-1]!r}", where=where, value=e["input"], allowed=e["ctx"]["expected"].replace("'", "")))
        elif e["type"] == "value_error":
            found.append(UserError(str(e["ctx"]["error"]), where=where))
        else:
            found.append(UserError(f"{'.'.join(map(str, loc)) or 'document'}: {e['msg']}", where=where, value=e.get("input")))
    return found


def validate(doc: MarkedDocument, services_by_backend: Mapping[str, frozenset[str]]) -> Matrix:
    """Validate a parsed matrix against the schema and the recipes in pack/ (which name the backends
    and the services each can build). Raises ErrorList with every problem found."""
    if not isinstance(doc.data, dict):
        raise UserError("the top level must be a mapping with 'backends'", where=doc.where(()), value=type(doc.data).__name__)
    try:
        matrix = Matrix.model_validate(doc.data)
    except ValidationError as e:
        raise ErrorList(_pydantic_errors(doc, e)) from None
    errors = list(_semantic_errors(doc, matrix, services_by_backend))
    if errors:
        raise ErrorList(errors)
    return matrix


def _semantic_errors(doc: MarkedDocument, m: Matrix, known: Mapping[str, frozenset[str]]):
    all_services = sorted(set().union(*known.values())) if known else []
    for name, backend in m.backends.items():
        at = ("backends", name)
        if name not in known:
            yield UserError("unknown backend", where=doc.where_key(at), value=name,
                            allowed=sorted(known), hint=closest(name, known) or f"add pack/{name}/recipe.py first")
            continue
        for v in backend.variants:
            if not _VARIANT_RE.fullmatch(v):
                yield UserError("malformed variant", where=doc.where(at + ("variants",)), value=v, allowed="lower-case letters and digits")
        for i, rel in enumerate(backend.releases):
            rat = at + ("releases", i)
            if rel.variant is not None and not backend.variants:
                yield UserError(f"backend {name!r} has no variants", where=doc.where(rat + ("variant",)), value=rel.variant,
                                hint="remove the variant, or declare it in the backend's 'variants'")
            elif rel.variant is not None and rel.variant not in backend.variants:
                yield UserError("unknown variant", where=doc.where(rat + ("variant",)), value=rel.variant, allowed=backend.variants)
            elif rel.variant is None and backend.variants:
                yield UserError(f"backend {name!r} needs a variant on every release", where=doc.where(rat), allowed=backend.variants)
            platforms = rel.platforms or backend.platforms
            for service, versions in rel.services.items():
                sat = rat + ("services", service)
                if service not in known[name]:
                    yield UserError(f"unknown service for backend {name!r}", where=doc.where_key(sat), value=service,
                                    allowed=sorted(known[name]),
                                    hint=closest(service, all_services) if service not in all_services else f"pack/{name}/recipe.py does not build it")
                for j, sv in enumerate(versions):
                    extra = set(sv.platforms or ()) - set(platforms)
                    if extra:
                        yield UserError("service platform not among the release's platforms", where=doc.where(sat + (j, "platforms")),
                                        value=sorted(extra)[0], allowed=platforms)
                    narrowed = set(sv.archs or ()) - set(rel.archs)
                    if rel.archs and narrowed:
                        yield UserError("service arch not among the release's archs", where=doc.where(sat + (j, "archs")),
                                        value=sorted(narrowed)[0], allowed=rel.archs)


def load_document(path: Path) -> MarkedDocument:
    """Read matrix.yaml with positions kept for error messages."""
    return load_marked_file(path)
