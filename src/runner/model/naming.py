"""Image names per seed 000: tags formatted from targets, and any runner image reference parsed back.

Multi-arch tag:   {backend}{major.minor}[-{variant}]-{service}{version}[-dev]
Single-arch tag:  the same without -dev, plus -{os}-{arch}
Image:            [{registry}/]{namespace}/{repository}:{tag}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.model.errors import UserError

PLATFORMS = ("linux/amd64", "linux/arm64")
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}  # `uname -m` on each platform
# ASCII digits without leading zeros, as matrix.yaml allows them (a calendar month may be padded: dtk25.04)
_N = r"(?:0|[1-9][0-9]{0,8})"
_SERVICE_VERSION = rf"{_N}(?:\.{_N})*(?:\.?(?:a|b|rc|post|dev){_N})*"
_BACKEND_VERSION = rf"(?:[1-9][0-9]\.(?:0[1-9]|1[0-2])|{_N}\.{_N})"
# Docker's reference grammar: registry host[:port], lower-case path components, a sha256 digest
# (host names in lower case: the catalog and GPUStack compare names as written, and DNS ignores case)
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::(?P<port>[0-9]{1,5}))?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def host_problem(host: str) -> str:
    """Why `host` is not a registry host[:port] ('' when it is one)."""
    m = _HOST.fullmatch(host)
    if m is None:
        return ("a host name in lower case" if _HOST.fullmatch(host.lower())
                else "lower-case letters, digits, dots and dashes, then an optional :port")
    if m["port"] is not None and not 1 <= int(m["port"]) <= 65535:
        return "a port from 1 to 65535"
    return ""


def format_tag(t, platform: str = "", dev: bool = False) -> str:
    """Tag of a target: multi-arch, or single-arch when a platform is given, or the -dev index."""
    return compose_tag(t.backend, t.backend_version, t.variant, t.service, t.service_version, platform, dev)


def compose_tag(backend: str, backend_version: str, variant: str, service: str, service_version: str,
                platform: str = "", dev: bool = False) -> str:
    """Tag from its fields (see the module docstring for the shape)."""
    tag = f"{backend}{backend_version}{f'-{variant}' if variant else ''}-{service}{service_version}"
    if platform:
        tag += "-" + platform.replace("/", "-")
    elif dev:
        tag += "-dev"
    return tag.lower()


def format_image(tag: str, namespace: str = "gpustack", repository: str = "runner", registry: str = "") -> str:
    """Full image reference for a tag."""
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return f"{prefix}{namespace}/{repository}:{tag}"


@dataclass(frozen=True)
class ParsedImage:
    """The fields of a runner image reference."""

    registry: str
    namespace: str
    repository: str
    backend: str
    backend_version: str
    backend_variant: str
    service: str
    service_version: str
    platform: str  # "" for a multi-arch tag
    dev: bool

    @property
    def tag(self) -> str:
        return compose_tag(self.backend, self.backend_version, self.backend_variant, self.service,
                           self.service_version, self.platform, self.dev)

    def as_dict(self) -> dict[str, object]:
        return {
            "registry": self.registry, "namespace": self.namespace, "repository": self.repository,
            "backend": self.backend, "backend_version": self.backend_version,
            "backend_variant": self.backend_variant, "service": self.service,
            "service_version": self.service_version, "platform": self.platform, "dev": self.dev,
            "tag": self.tag,
        }


class ImageParser:
    """Reads runner image references. Its vocabulary (backends, their variants, services, platforms)
    comes from the matrix and the recipes, so a new backend is understood as soon as it is added."""

    def __init__(self, variants: Mapping[str, Iterable[str]], services: Iterable[str], platforms: Iterable[str]) -> None:
        self.backends = sorted(variants)
        self.services = sorted(services)
        self.platforms = sorted(platforms)
        alt = lambda names: "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))  # noqa: E731
        all_variants = {v for vs in variants.values() for v in vs}
        self._variants = {b: set(v) for b, v in variants.items()}
        osarch = alt(p.replace("/", "-") for p in self.platforms) or "(?!)"
        self._re = re.compile(
            rf"^(?P<backend>{alt(self.backends)})(?P<bv>{_BACKEND_VERSION})"
            rf"(?:-(?P<variant>{alt(all_variants) or '(?!)'}))?"
            rf"-(?P<service>{alt(self.services)})(?P<sv>{_SERVICE_VERSION})"
            rf"(?:-(?P<platform>{osarch})|-(?P<dev>dev))?$"
        )

    def parse(self, reference: str) -> ParsedImage:
        """Split `[registry/][namespace/]repository:tag` and read the tag's fields."""
        ref = reference
        if not ref or not ref.isascii() or any(c.isspace() for c in ref) or len(ref) > 512:
            raise UserError("not a runner image reference (ASCII, no spaces)", value=reference)
        if "@" in ref:
            ref, digest = ref.split("@", 1)
            if not _DIGEST.fullmatch(digest):
                raise UserError("malformed digest", value=digest, allowed="sha256: and 64 lower-case hex digits")
        name, sep, tag = ref.rpartition(":")
        if not sep or "/" in tag:
            name, tag = ref, ""
        if not tag and re.match(r"^[a-z]", ref) and "/" not in ref:
            name, tag = "", ref  # a bare tag
        if not tag:
            raise UserError("not a runner image reference (no tag)", value=reference,
                            hint="expected [registry/]namespace/repository:tag such as gpustack/runner:cuda12.8-vllm0.14.1")
        registry, namespace, repository = _split_name(name)
        if registry and (problem := host_problem(registry)):
            raise UserError("malformed registry host", value=registry, allowed=problem)
        for part in (*(namespace.split("/") if namespace else ()), repository) if name else ():
            if not _COMPONENT.fullmatch(part):
                raise UserError("malformed image name component", value=part,
                                allowed="lower-case letters and digits, joined by '.', '_', '__' or '-'")
        if len(tag) > 128:
            raise UserError("tag longer than 128 characters", value=tag)
        m = self._re.match(tag)
        if not m:
            raise UserError("cannot read the runner tag", value=tag, allowed=self._explain(tag))
        backend, variant = m["backend"], m["variant"] or ""
        if variant and variant not in self._variants.get(backend, ()):
            raise UserError(f"backend {backend!r} has no variant {variant!r}", value=tag,
                            allowed=sorted(self._variants.get(backend, ())) or "no variant")
        return ParsedImage(
            registry=registry, namespace=namespace, repository=repository, backend=backend,
            backend_version=m["bv"], backend_variant=variant, service=m["service"],
            service_version=m["sv"], platform=(m["platform"] or "").replace("-", "/", 1), dev=bool(m["dev"]),
        )

    def _explain(self, tag: str) -> str:
        backend = next((b for b in sorted(self.backends, key=len, reverse=True) if tag.startswith(b)), None)
        if backend is None:
            return f"a tag starting with a backend: {', '.join(self.backends)}"
        if not re.match(rf"^{re.escape(backend)}{_BACKEND_VERSION}", tag):
            return f"{backend} then its major.minor version, e.g. {backend}12.8"
        return (f"{{backend}}{{major.minor}}[-{{variant}}]-{{service}}{{version}}[-dev|-{{os}}-{{arch}}] with service one of "
                f"{', '.join(self.services)} and platform one of {', '.join(self.platforms)}")


def _split_name(name: str) -> tuple[str, str, str]:
    if not name:
        return "", "", ""
    parts = name.split("/")
    registry = ""
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
    repository = parts.pop()
    return registry, "/".join(parts), repository
