"""`runner cache`: where this project's cache is, each kind's size, and --clear to remove it whole."""

from __future__ import annotations

import argparse
import sys


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def cache(a: argparse.Namespace) -> int:
    from runner.model.errors import UserError
    from runner.model.files import cache_root
    from runner.ui import cache as folders

    if a.info and a.clear:
        raise UserError("--info and --clear go separately", hint="run `runner cache --info`, then `runner cache --clear`")
    root = cache_root()
    if a.clear:
        removed, notes = folders.clear(root)
        for note in notes:
            print(f"runner: cache: {note}", file=sys.stderr)
        freed = sum(k.bytes for k in removed)
        print(f"removed {root}: {', '.join(k.name for k in removed) or 'nothing was there'} ({_size(freed)})")
        return 0
    kinds = folders.kinds(root)
    print(f"cache of this project: {root}")
    for k in kinds:
        print(f"  {k.name:<13} {_size(k.bytes):>9} {k.files:>7} files  {k.what}")
    print(f"  {'total':<13} {_size(sum(k.bytes for k in kinds)):>9}")
    if folders.engine(root).pid():
        print(f"the embedded engine is running ({folders.engine(root).host}); --clear stops it")
    return 0
