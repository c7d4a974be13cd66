"""What each local image was last built from, for the Docker engine: the Dockerfile, its build
arguments, target and platform, and the IDs of the base images under it. When none of that changed
and the daemon still holds the very image that build produced, a warm build does not go to BuildKit
at all (BuildKit would find every step cached; asking it costs a client start and a solve per image).

One small file per daemon, image and inputs under $RUNNER_CACHE_DIR/builds, holding the image ID
(runner.model.files.JsonCache). A file that does not hold up is
ignored; a record whose image ID the daemon no longer has is ignored."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.model.files import JsonCache

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def inputs_key(daemon: str, image: str, dockerfile: str, target: str, platform: str, build_args: Sequence[str],
               base_ids: Mapping[str, str]) -> str:
    """Everything a build of `image` depends on, as one key."""
    text = json.dumps([daemon, image, dockerfile, target, platform, list(build_args), sorted(base_ids.items())])
    return hashlib.sha256(text.encode()).hexdigest()


class BuildRecords:
    """Image IDs by build inputs (see inputs_key)."""

    def __init__(self, root: Path | None = None) -> None:
        self.cache = JsonCache("builds", root)
        self.root = self.cache.root

    def get(self, key: str) -> str:
        data = self.cache.get(key)
        found = data.get("image_id") if isinstance(data, dict) else None
        return found if isinstance(found, str) and _IMAGE_ID.fullmatch(found) else ""

    def put(self, key: str, image_id: str) -> None:
        self.cache.put(key, {"image_id": image_id})
