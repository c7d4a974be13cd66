"""`runner official`: the official images the selected rows layer, the digest each builds from, and
`--lock`, which records the digests their registries answer now (runner.flow.official_lock)."""

from __future__ import annotations

import argparse
import json
import sys


def official(a: argparse.Namespace) -> int:
    import anyio

    from runner.cli.inspect import selected_targets
    from runner.flow.official_lock import lock_digests, official_images

    project, targets = selected_targets(a)
    images = official_images(project, targets)
    not_checked = anyio.run(lock_digests, project, images, a.refresh) if a.lock else []
    if a.format == "json":
        print(json.dumps({"images": [o.as_json() for o in images], "not_checked": not_checked}, indent=1))
    else:
        for o in images:
            print(f"{o.backend:6} {o.image}  {o.digest or 'not pinned'}  ({len(o.tags)} row{'s' * (len(o.tags) > 1)})")
    for line in not_checked:
        print(f"runner: {line}", file=sys.stderr)
    pinned = sum(bool(o.digest) for o in images)
    print(f"runner: {len(images)} official images layered by {sum(len(o.tags) for o in images)} rows; {pinned} pinned "
          f"by digest, {len(images) - pinned} not pinned" + (" (a release refuses those rows)" if pinned < len(images) else ""),
          file=sys.stderr)
    return 0
