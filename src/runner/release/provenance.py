"""What the images say about where they come from: the OCI source, revision and created labels.

created is $SOURCE_DATE_EPOCH, else the recipe commit's time, else the Unix epoch: never "now", so the
same commit gives the same labels, and rebuilding or republishing changes no digest."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

EPOCH = "1970-01-01T00:00:00Z"


def rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_info(root: Path, source: str, revision: str = "") -> dict[str, str]:
    """source, revision and created for the checkout at `root` (git is asked when it is there)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    if (epoch := os.environ.get("SOURCE_DATE_EPOCH", "")).isdigit():
        created = rfc3339(int(epoch))
    elif (stamp := git("log", "-1", "--format=%ct")).isdigit():
        created = rfc3339(int(stamp))
    else:
        created = EPOCH
    return {"source": source, "revision": revision or git("rev-parse", "HEAD"), "created": created}
