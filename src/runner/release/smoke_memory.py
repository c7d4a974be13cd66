"""Smoke results remembered on this machine for the Docker engine: one small JSON file per image and
rendered check list (see pipeline.memory_key), under $RUNNER_CACHE_DIR/smoke. A file that cannot be
read back is ignored and rewritten; nothing else depends on it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.model.files import cache_root


class SmokeMemory:
    """Remembered smoke results keyed by image and rendered checks (same inputs, same result)."""

    def __init__(self, root: Path | None = None, recall: bool = True) -> None:
        self.root = (root or cache_root()) / "smoke"
        self.recall = recall  # False: run every check (--no-smoke-cache), and remember the fresh results

    def get(self, key: str) -> list[dict] | None:
        if not self.recall:
            return None
        try:
            data = json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, list) and all(isinstance(r, dict) and "name" in r for r in data) else None

    def put(self, key: str, results: list[dict]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{key}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(results))
            os.replace(tmp, self.root / f"{key}.json")
        except OSError:
            pass  # a read-only cache only costs time
