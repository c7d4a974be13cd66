"""Stand-ins of official service images: a row that layers a service's official image
(runner.compose.official) which cannot be pulled here builds on the backend's Debian stand-in with uv
and the service's own wheel at the row's exact version from the package index, the resolver taking
the torch that wheel pins. A vendor image whose recipe checks the service and torch it ships stands
in the same way, torch held at the vendor's version. What such a stand-in cannot carry is declared
with its substitution (runner.rehearse.substitutions.OfficialStandin)."""

from __future__ import annotations

import hashlib

from runner.compose.stages import Stage
from runner.model.targets import Target
from runner.rehearse.rewrite import STANDIN_REPOSITORY
from runner.rehearse.substitutions import OfficialStandin

# The services a vendor image ships that the index has under the name the recipe's check asks pip for
VENDOR_SERVICES = ("vllm", "sglang")
# Reads the torch the install left in the image, for the substitution's text
TORCH_VERSION = "import importlib.metadata as m; print(m.version('torch'))"


def official_of(recipes, t: Target, base: Stage) -> OfficialStandin | None:
    """The stand-in for a base stage that is the official image a layered row starts from, else None."""
    recipe = recipes.get(t.backend)
    official = getattr(getattr(recipe, "module", None), "OFFICIAL", None)
    if official is None or not official.layers(t) or base.image != official.pinned(t):
        return None
    return OfficialStandin(official.image(t), t.service, t.service_version, t.backend)


def vendor_of(t: Target, base: Stage, leaf: Stage) -> OfficialStandin | None:
    """For a vendor image whose service stage checks the service and torch the image ships
    (runner.compose.kit.vendor_service, its build argument <SERVICE>_TORCH_VERSION), the stand-in with
    both at those versions; None for any other base."""
    name = f"{t.service.upper()}_TORCH_VERSION"
    chain = leaf.chain()
    torch = next((a.value for s in chain for a in s.args if a.name == name), "")
    if not torch or t.service not in VENDOR_SERVICES or base not in chain:
        return None
    return OfficialStandin(base.image, t.service, t.service_version, t.backend, torch=torch)


def dockerfile(base: str, official: OfficialStandin) -> str:
    """The stand-in on the backend's Debian stand-in `base`: uv from the index, then exactly the service's
    release; no cache is left in a layer (the image's own smoke checks look)."""
    override, tidy = (" --override /tmp/leave-out.txt", " && rm /tmp/leave-out.txt") if official.overrides else ("", "")
    return "\n".join([
        f"FROM {base}",
        "RUN PIP_NO_CACHE_DIR=1 python3 -m pip install uv",
        # the official images install the service into the system python with uv
        f'RUN {_overrides(official)}uv pip install --system --no-cache{override} '
        + " ".join(f'"{r}"' for r in (official.requirement, *official.also)) + tidy,
        f'RUN python3 -c "{TORCH_VERSION}"',
        'CMD ["bash"]',
    ]) + "\n"


def _overrides(official: OfficialStandin) -> str:
    """The override file: the declared dependencies left out (a marker that is never true), a vendor's torch."""
    if not official.overrides:
        return ""
    lines = "\\n".join(official.overrides)
    return f'printf "{lines}\\n" > /tmp/leave-out.txt && '



def tag(base: str, official: OfficialStandin, platform: str) -> str:
    """The stand-in's tag: the service, version and platform it stands for, and a hash of what makes it."""
    text = dockerfile(base, official) + platform
    arch = platform.rsplit("/", 1)[-1]
    return (f"{STANDIN_REPOSITORY}{'vendor' if official.vendor else 'official'}-{official.service}{official.version}-{arch}-"
            f"{hashlib.sha256(text.encode()).hexdigest()[:12]}")
