"""Rows that layer a service's official image instead of compiling the service.

A recipe declares, per service, the version range whose rows compile (the rows of the seed era, as
they were released) and the official image every other row starts from (`Official`). The image is
named by its tag; what builds is the tag pinned by the digest recorded for it in the backend's
`official.lock.yaml` (`runner official --lock` fills it where the registry answers; a refresh is a
reviewed change of that file). A row whose image has no digest yet builds from the tag and is said
to be unpinned (`unpinned()`), so a release can refuse it.

On the official image the row adds what GPUStack needs, with the same kit as a compiled row: the
shared runtime (OS tools, tini, locale, python check, CMake, build tools), a check that the image
ships the service version the tag names, Ray at the backend's pin, what the row builds on the image
(connectors the image lacks, compiled against its torch), the audio and tokenizer extras,
the patches declared for that version, the environment and the entrypoint.
"""

from __future__ import annotations

import re

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from packaging.specifiers import SpecifierSet

from runner.compose.components import Component, python
from runner.compose.kit import (OTEL_BETAS, BuiltWheels, add_patches, finish, install, install_built, service_builder,
                                shows_version, site_packages)
from runner.compose.requirements import Requirements, canonical, pkg
from runner.compose.stages import Stage, StageBuilder, base_stage
from runner.model.errors import UserError, Where
from runner.model.marked_yaml import load_marked_file
from runner.model.targets import Target

LOCK_NAME = "official.lock.yaml"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
AUDIO_EXTRAS = ("librosa", "soundfile", "mistral_common[audio]")
# pre-releases the service itself pins, which its official image carries (SGLang 0.5.22: flash-attn-4
# 4.0.0b40 and cuda-tile 1.6.0rc5, found by rehearsing cuda13.0-sglang0.5.22)
SERVICE_BETAS = {"sglang": ("flash-attn-4", "cuda-tile")}
# installed families every install on the image keeps at the image's versions: Ray's dashboard takes
# OpenTelemetry's beta Prometheus exporter at its newest, which moves the SDK under the image's own OTLP
# exporters (pip check, rehearsing rocm7.0-vllm0.18.1: exporters 1.40.0 under opentelemetry-sdk 1.45.2).
# An install that then does not resolve needs a newer OpenTelemetry than the image has (Ray 2.54's
# dashboard needs opentelemetry-sdk>=1.30): uv names both, and the row's image is the one to move
IMAGE_HOLDS = ("opentelemetry-",)
# requirements of what a row builds that the image's held versions win over (pip check allows exactly
# these): LMCache 0.4.6 to 0.5.6 cap opentelemetry-api at 1.40.0 and the Prometheus exporter at 0.61b0,
# while vLLM 0.32's image holds OpenTelemetry 1.45 with exporters that exist only from 1.44 on, so no
# OpenTelemetry satisfies both (resolving rocm7.2-vllm0.32.0): the service's tracing stays whole and
# LMCache's metrics take the image's OpenTelemetry. The line ran rehearsing rocm7.0-vllm0.18.1 (whose
# image's 1.40 satisfies LMCache); not checked here: LMCache importing on 1.45 (rocm7.2's stand-in lacks amd_smi)
BUILT_OVER_IMAGE = {"lmcache": ("opentelemetry-api", "opentelemetry-exporter-prometheus")}
# and every install on it keeps what the image's service requires (Requirements.holds_requirements_of):
# installed alone, vllm-omni 0.14's newest diffusers took huggingface-hub 1.x and with it transformers 5.x,
# under vLLM 0.15's `transformers<5` (pip check, rehearsing cann8.5-310p-vllm0.15.0)


@dataclass(frozen=True)
class Official:
    """Which rows of a backend layer an official image, and which image each one layers."""

    recipe_dir: Path
    compiled: Mapping[str, str]  # service -> PEP 440 range of the rows that compile (the seed era)
    images: Mapping[str, Callable[[Target], str]]  # service -> the official image's tag for a row
    ray: str = ""  # Ray the layered rows pin ("" keeps the image's own)
    env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # service -> environment of the image
    # service -> installs that mend what Ray's install does to the image: (the row's requirements, the
    # shell before them, which may end the step when there is nothing to mend)
    after_ray: Mapping[str, tuple[tuple[Callable[[Target], Requirements], str], ...]] = field(default_factory=dict)
    # service -> what a row installs on the image besides Ray and the extras, with the components it adds
    # (None where the row adds nothing)
    adds: Mapping[str, Callable[[Target], tuple[Requirements, tuple[Component, ...]] | None]] = \
        field(default_factory=dict)
    # service -> what a row builds on the official image (build stages on its runtime stage, which has the
    # image's torch and compilers), installed in one step after Ray; empty where the row builds nothing
    builds: Mapping[str, Callable[[Target, Stage], Sequence[BuiltWheels]]] = field(default_factory=dict)
    # service -> the steps that wrap the image's commands (sourcing the toolkit's environment, say), run
    # after every install and before the patches, as on the compiled rows
    wrappers: Mapping[str, Callable[[StageBuilder], StageBuilder]] = field(default_factory=dict)

    def layers(self, t: Target) -> bool:
        """Whether this row starts from the service's official image."""
        if t.service not in self.images:
            return False
        spec = self.compiled.get(t.service)
        return not (spec and SpecifierSet(spec).contains(t.service_version, prereleases=True))

    def image(self, t: Target) -> str:
        """The official image by tag (what a reader sees)."""
        return self.images[t.service](t)

    def pinned(self, t: Target) -> str:
        """The reference that builds: the tag with its locked digest, or the tag alone while unpinned."""
        tag = self.image(t)
        digest = lock(self.recipe_dir).get(tag)
        return f"{tag}@{digest}" if digest else tag

    def base(self, t: Target, platform: str) -> Stage:
        return base_stage(self.pinned(t), platform)

    def service(self, t: Target, runtime: Stage, *, components: tuple[Component, ...] = ()) -> Stage:
        """The service stage on the official image (see the module's description)."""
        v, name = t.service_version, t.service
        b = service_builder(t, runtime)
        b.arg("OFFICIAL_IMAGE", self.image(t), required=False, doc="the official image this row layers (by tag)")
        # what the image holds, for the resolver: the service at the tag's release, with what it requires;
        # not for a service that pins pre-releases (SGLang: cuda-tile, an sdist whose build needs CUDA),
        # which uv takes only where a requirement names them
        holds = None if name in SERVICE_BETAS else Requirements(
            (pkg(f"{name}=={v}"),), prereleases=OTEL_BETAS, title=f"the official image's {name} {v}")
        b.run(f'python3 -m pip show {name} | grep -E "^(Name|Version):"\n'
              f'{shows_version(name, f"{name.upper()}_VERSION")}',
              title=f"check the official image's {name} version", holds=holds)
        if self.ray:
            # Ray's dashboard extra asks for OpenTelemetry packages published as betas only
            install(b, t, Requirements((pkg(f"ray[cgraph,client,default]=={self.ray}"),), upgrade=("ray",),
                                       prereleases=OTEL_BETAS, holds_installed=IMAGE_HOLDS, holds_requirements_of=(name,),
                                       title=f"Ray {self.ray} with its client, dashboard and compiled-graph extras"))
            b.component(python("ray", self.ray, imports=("ray.dashboard",)))
            for requirements, before in self.after_ray.get(name, ()):
                install(b, t, holding(requirements(t), name), before=before)
        if name in self.builds and (built := tuple(self.builds[name](t, runtime))):
            over = tuple((p.name, r) for w in built for p in w.packages for r in BUILT_OVER_IMAGE.get(canonical(p.name), ()))
            install_built(b, t, built, no_build_isolation=True, prereleases=OTEL_BETAS, holds_installed=IMAGE_HOLDS,
                          holds_requirements_of=(name,), supersedes=over,
                          title=f"what the row builds on the official image: {', '.join(w.mount.target.split('/')[-1] for w in built)}")
        # the image's service (its tracing) and Ray's dashboard bring OpenTelemetry's beta-only packages
        install(b, t, Requirements(tuple(pkg(p) for p in AUDIO_EXTRAS), prereleases=OTEL_BETAS + SERVICE_BETAS.get(name, ()),
                                   holds_installed=IMAGE_HOLDS, holds_requirements_of=(name,), title="audio extras"))
        if name in self.adds and (added := self.adds[name](t)) is not None:
            install(b, t, holding(added[0], name))
            b.component(*added[1])
        if name in self.wrappers:
            self.wrappers[name](b)
        add_patches(b, t, self.recipe_dir, site_packages(name))
        b.component(python(name, v, imports=(name,)), *components)
        return finish(b, t, **self.env.get(name, {}))


def holding(r: Requirements, service: str) -> Requirements:
    """A recipe's install on the official image, keeping the image's held families and what its service requires."""
    return replace(r, holds_installed=tuple(dict.fromkeys((*r.holds_installed, *IMAGE_HOLDS))),
                   holds_requirements_of=tuple(dict.fromkeys((*r.holds_requirements_of, service))))


def lock(recipe_dir: Path) -> dict[str, str]:
    """The backend's official.lock.yaml: official image tag -> digest (empty where not yet pinned)."""
    return dict(_lock(recipe_dir / LOCK_NAME))


@lru_cache(maxsize=16)
def _lock(path: Path) -> tuple[tuple[str, str], ...]:
    if not path.is_file():
        return ()
    doc = load_marked_file(path)  # YAML errors and limits with file, line and column
    if not isinstance(doc.data or {}, dict):
        raise UserError("an official-image lock maps image tags to digests", where=Where(str(path)),
                        value=type(doc.data).__name__, allowed="a mapping of 'image:tag' to 'sha256:<64 hex digits>' or null")
    out = []
    for tag, digest in (doc.data or {}).items():
        if digest is not None and not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
            raise UserError(f"malformed digest for {tag}", where=doc.where((tag,)), value=digest,
                            allowed="sha256:<64 lower-case hex digits>, or null while not pinned")
        if digest:
            out.append((str(tag), digest))
    return tuple(out)


@dataclass
class OfficialImage:
    """One official image: its backend, its tag, the digest it builds from ("" while not pinned) and the
    rows that layer it."""

    backend: str
    image: str
    digest: str = ""
    tags: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"backend": self.backend, "image": self.image, "digest": self.digest or None, "targets": self.tags}


def official_images(project, targets: Iterable[Target]) -> list[OfficialImage]:
    """Every official image the given rows layer, with its locked digest, in backend and image order."""
    found: dict[tuple[str, str], OfficialImage] = {}
    for t in targets:
        official = getattr(project.recipes[t.backend].module, "OFFICIAL", None)
        if official is None or not official.layers(t):
            continue
        image = official.image(t)
        entry = found.setdefault((t.backend, image), OfficialImage(t.backend, image, lock(official.recipe_dir).get(image, "")))
        entry.tags.append(t.tag)
    return [found[k] for k in sorted(found)]


def unpinned(project, targets: Iterable[Target]) -> list[OfficialImage]:
    """The official images among the rows' bases that no digest pins yet."""
    return [o for o in official_images(project, targets) if not o.digest]


def require_pinned(project, targets: Iterable[Target]) -> None:
    """Refuse to publish a row whose official image is not pinned: the digest is what a release builds."""
    missing = unpinned(project, targets)
    if missing:
        names = ", ".join(o.image for o in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UserError(f"{len(missing)} official image(s) the selection layers are not pinned by digest: {names}",
                        hint="run `runner official --lock` where their registries answer, review the change to "
                             "pack/<backend>/official.lock.yaml and commit it; or narrow the selection")
