"""`runner catalog --history TAG`: every recorded change of a final tag's digest (a polished re-push,
a discard), from the digests file promote keeps beside the catalog."""

from __future__ import annotations

import argparse
import json

from runner.model.errors import UserError


def history(a: argparse.Namespace) -> int:
    from runner.model.catalog import PACKAGED
    from runner.release.ledger import history as changes, path_for

    path = path_for(a.file or PACKAGED)
    found = changes(path, a.history)
    if not found:
        raise UserError(f"{path}: no recorded change of {a.history}",
                        hint="promote records each change of a final tag's digest there")
    if a.format == "json":
        print(json.dumps(found, indent=1))
    else:
        for c in found:
            print(f"{c['at']}  {c['image']}  {c['old'] or '(none)'} -> {c['new'] or '(removed)'}  {c['reason']}")
    return 0
