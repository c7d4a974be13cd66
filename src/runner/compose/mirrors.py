"""The mirror map: URL prefixes the recipes name (a PyTorch wheel index, a vendor's download host)
rewritten to where a build farm, an air-gapped site or a test really reaches them, and image prefixes
(docker.io/ascendai) of the base images, pulled from a registry that mirrors them. It applies to what
the engines run and to what `runner resolve` checks alike, so both see the same places.

Sources, later ones winning for the same prefix: `mirrors:` in matrix.yaml, then $RUNNER_MIRRORS
(`FROM=TO` pairs separated by white space). The longest matching prefix is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from runner.model.errors import UserError
from runner.model.urls import check_mirror_key

ENV = "RUNNER_MIRRORS"


@dataclass(frozen=True)
class Mirrors:
    """Prefix -> replacement, longest prefix first: URL prefixes for what scripts fetch, image prefixes
    (a registry host and path, no scheme) for base images."""

    pairs: tuple[tuple[str, str], ...] = ()
    images: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, mapping: Mapping[str, str]) -> Mirrors:
        ordered = sorted(mapping.items(), key=lambda p: -len(p[0]))
        return cls(tuple(p for p in ordered if "://" in p[0]), tuple(p for p in ordered if "://" not in p[0]))

    def __bool__(self) -> bool:
        return bool(self.pairs or self.images)

    def image(self, ref: str) -> str:
        """A base image reference, pulled from the mirror of the longest image prefix that holds it: a
        namespace or a whole repository (docker.io/ascend is not a prefix of docker.io/ascendai/cann)."""
        if not self.images:
            return ref
        full = full_reference(ref)
        for prefix, target in self.images:
            if full.startswith(prefix) and full[len(prefix):][:1] in ("/", ":", "@"):  # a namespace or a repository
                return target + full[len(prefix):]
        return ref

    def url(self, url: str) -> str:
        """One URL, rewritten by the longest prefix that matches it."""
        for prefix, target in self.pairs:
            if url.startswith(prefix):
                return target + url[len(prefix):]
        return url

    def text(self, text: str) -> str:
        """Every URL in a script, rewritten (an unmatched text is returned as it was)."""
        if not self.pairs:
            return text
        pattern = "|".join(re.escape(p) for p, _ in self.pairs)  # longest first: alternation tries in order
        return re.sub(pattern, lambda m: dict(self.pairs)[m[0]], text)

    def as_dict(self) -> dict[str, str]:
        return dict(self.pairs + self.images)


def full_reference(ref: str) -> str:
    """An image reference as the registry sees it: docker.io/library/ubuntu:22.04 for ubuntu:22.04."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if slash else f"docker.io/library/{ref}"


def parse_env(value: str) -> dict[str, str]:
    """`FROM=TO FROM2=TO2` from $RUNNER_MIRRORS; a malformed pair is a user error naming it."""
    found: dict[str, str] = {}
    for word in value.split():
        prefix, sep, target = word.partition("=")
        try:
            if not sep:
                raise ValueError(f"malformed pair {word!r} (allowed: FROM=TO)")
            if ("://" in prefix) != ("://" in target):
                raise ValueError(f"malformed pair {word!r} (allowed: URL=URL, or image prefix=image prefix)")
            found[check_mirror_key(prefix, "mirrored prefix")] = check_mirror_key(target)
        except ValueError as e:
            raise UserError(f"${ENV}: {e}") from None
    return found


def mirrors(matrix_mirrors: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> Mirrors:
    """The project's mirror map: the matrix's, overridden by the environment's."""
    env = os.environ if environ is None else environ
    for prefix, target in (matrix_mirrors or {}).items():
        if ("://" in prefix) != ("://" in target):
            raise UserError("matrix.yaml mirrors: a URL maps to a URL and an image prefix to an image prefix",
                            value=f"{prefix}: {target}")
    return Mirrors.of({**(matrix_mirrors or {}), **parse_env(env.get(ENV, ""))})
