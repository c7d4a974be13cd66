"""What failed in a build, said once per cause with the advice that fits it: one line per base image
that could not be pulled (naming its registry), one line for an engine that went away, one line per
image whose recipe or smoke checks failed. Infrastructure faults never send anyone to pack/."""

from __future__ import annotations

from collections import defaultdict

from runner.compose.mirrors import full_reference
from runner.release.pipeline import registry_of

SHOWN = 3  # images named per group line; the rest are counted
INFRASTRUCTURE = ("base image", "engine", "registry")  # causes that are nobody's recipe

BASE_ADVICE = ("nothing is wrong with the recipes: the engine could not get these base images; point their "
               "prefix at a registry that mirrors them, in matrix.yaml `mirrors:` ({pairs}) or $RUNNER_MIRRORS "
               "({words}), or pull them on the daemon under the names shown, and build again")
ENGINE_ADVICE = "nothing is wrong with the recipes: the container engine stopped answering; build again once it runs"
REGISTRY_ADVICE = "nothing is wrong with the recipes: a registry kept failing; run the same command again later"
RECIPE_ADVICE = ("fix the recipe or smoke spec in pack/ (the backend's recipe.py, smoke.yaml) and build again; "
                 "failed tags are not published")


def image_prefix(image: str) -> str:
    """The registry and namespace a mirror entry names for an image (docker.io/ascendai for
    ascendai/cann:8.2, docker.io/library for ubuntu:22.04; the repository, for an image with no namespace)."""
    host, _, path = full_reference(image).split("@", 1)[0].partition("/")
    if "/" in path:
        return f"{host}/{path.rsplit('/', 1)[0]}"
    return f"{host}/{path.split(':', 1)[0]}"  # no namespace (vendor.invalid/base:1.0): the repository itself


def _where(image: dict) -> str:
    return f"{image['tag']} on {image['platform']}"


def _some(images: list[dict]) -> str:
    names = ", ".join(_where(i) for i in images[:SHOWN])
    return names + (f" and {len(images) - SHOWN} more" if len(images) > SHOWN else "")


def _reason(image: dict) -> str:
    """The engine's own words, without what the group line already says."""
    text = image["error"]
    if image.get("base_image") and text.startswith("cannot pull the base image ") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.strip().splitlines()[-1][:300] if text.strip() else "no message"


def failure_lines(images: list[dict]) -> list[str]:
    """The failures of a build report's images, grouped by cause (see runner.release.pipeline.CAUSES),
    infrastructure first: it explains the most failures in the fewest lines."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for image in images:
        if not image["smoke"]["passed"]:
            groups[image.get("cause") or ("recipe" if image["error"] else "smoke")].append(image)
    lines: list[str] = []
    by_base: dict[str, list[dict]] = defaultdict(list)
    for image in groups["base image"]:
        by_base[image.get("base_image", "")].append(image)
    for base, failed in sorted(by_base.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"base image {base} could not be pulled from {registry_of(base)}: {_reason(failed[0])} "
                     f"({len(failed)} image{'s' * (len(failed) > 1)} not built: {_some(failed)})")
    if by_base:
        prefixes = sorted({image_prefix(base) for base in by_base})
        lines.append(BASE_ADVICE.format(pairs=", ".join(f"{p}: MIRROR/{p.split('/', 1)[1]}" for p in prefixes),
                                        words=" ".join(f"{p}=MIRROR/{p.split('/', 1)[1]}" for p in prefixes)))
    if gone := groups["engine"]:
        lines += [f"the container engine stopped answering: {_reason(gone[0])} ({len(gone)} image"
                  f"{'s' * (len(gone) > 1)} not built: {_some(gone)})", ENGINE_ADVICE]
    if faults := groups["registry"]:
        lines += [f"{_where(i)}: {_reason(i)}" for i in faults] + [REGISTRY_ADVICE]
    ours = groups["recipe"] + groups["smoke"]
    for image in ours:
        what = image["error"] or "smoke checks failed: " + ", ".join(image["smoke"]["failed"] or ["no checks ran"])
        lines.append(f"{_where(image)}: {what}")
    if ours:
        lines.append(RECIPE_ADVICE)
    return lines
