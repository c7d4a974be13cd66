"""`runner catalog --diff OLD NEW`: the per-release comparison of two catalogs, as markdown for a
release issue or pull request, or as JSON."""

from __future__ import annotations

import argparse
import json

from runner.compose.catalog_sources import load_source
from runner.model.catalog_diff import diff


def catalog_diff(a: argparse.Namespace) -> int:
    """Print what changed from OLD to NEW; exit 0 either way (a difference is not a failure)."""
    old_spec, new_spec = a.diff
    old, old_label = load_source(old_spec)
    new, new_label = load_source(new_spec)
    result = diff(old, new, old_label, new_label)
    print(json.dumps(result.to_json(), indent=1) if a.format == "json" else result.markdown().rstrip("\n"))
    return 0
