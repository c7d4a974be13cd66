"""What each local image was last built from, for the Docker engine: the Dockerfile, its build
arguments, target and platform, and the IDs of the base images under it. When none of that changed
and the daemon still holds the very image that build produced, a warm build does not go to BuildKit
at all (BuildKit would find every step cached; asking it costs a client start and a solve per image).

One small file per daemon, image and inputs under $RUNNER_CACHE_DIR/builds, holding the image ID
(read and written through runner.model.files' cache functions). A file that does not hold up is
ignored; a record whose image ID the daemon no longer has is ignored."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.model.files import cache_root, read_cache, write_cache

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def inputs_key(daemon: str, image: str, dockerfile: str, target: str, platform: str, build_args: Sequence[str],
               base_ids: Mapping[str, str]) -> str:
    """Everything a build of `image` depends on, as one key."""
    text = json.dumps([daemon, image, dockerfile, target, platform, list(build_args), sorted(base_ids.items())])
    return hashlib.sha256(text.encode()).hexdigest()


class BuildRecords:
    """Image IDs by build inputs (see inputs_key)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "builds"

    def get(self, key: str) -> str:
        data = read_cache(self.root / f"{key}.json", key)
        found = data.get("image_id") if isinstance(data, dict) else None
        return found if isinstance(found, str) and _IMAGE_ID.fullmatch(found) else ""

    def put(self, key: str, image_id: str) -> None:
        write_cache(self.root / f"{key}.json", key, {"image_id": image_id})
