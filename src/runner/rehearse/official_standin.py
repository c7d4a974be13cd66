"""Stand-ins of official service images: a row that layers a service's official image
(runner.compose.official) which cannot be pulled here builds on the backend's Debian stand-in with uv
and the service's own wheel at the row's exact version from the package index, the resolver taking
the torch that wheel pins. What such a stand-in cannot carry is declared with its substitution
(runner.rehearse.substitutions.OfficialStandin)."""

from __future__ import annotations

import hashlib

from runner.compose.stages import Stage
from runner.model.targets import Target
from runner.rehearse.rewrite import STANDIN_REPOSITORY
from runner.rehearse.substitutions import OfficialStandin

# Reads the torch the install left in the image, for the substitution's text
TORCH_VERSION = "import importlib.metadata as m; print(m.version('torch'))"


def official_of(recipes, t: Target, base: Stage) -> OfficialStandin | None:
    """The stand-in for a base stage that is the official image a layered row starts from, else None."""
    recipe = recipes.get(t.backend)
    official = getattr(getattr(recipe, "module", None), "OFFICIAL", None)
    if official is None or not official.layers(t) or base.image != official.pinned(t):
        return None
    return OfficialStandin(official.image(t), t.service, t.service_version, t.backend)


def dockerfile(base: str, official: OfficialStandin) -> str:
    """The stand-in on the backend's Debian stand-in `base`: uv from the index, then exactly the service's
    release; no cache is left in a layer (the image's own smoke checks look)."""
    override, tidy = (" --override /tmp/leave-out.txt", " && rm /tmp/leave-out.txt") if official.leaves_out else ("", "")
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
    """The override file that leaves the declared dependencies out (a marker that is never true)."""
    if not official.leaves_out:
        return ""
    lines = "\\n".join(f"{name}; sys_platform == 'never'" for name in sorted(official.leaves_out))
    return f'printf "{lines}\\n" > /tmp/leave-out.txt && '



def tag(base: str, official: OfficialStandin, platform: str) -> str:
    """The stand-in's tag: the service, version and platform it stands for, and a hash of what makes it."""
    text = dockerfile(base, official) + platform
    arch = platform.rsplit("/", 1)[-1]
    return (f"{STANDIN_REPOSITORY}official-{official.service}{official.version}-{arch}-"
            f"{hashlib.sha256(text.encode()).hexdigest()[:12]}")
