"""Commands that build on the embedded engine when no Docker daemon answers: `runner build` (and
`runner rehearse`, which calls `on_engine` itself). The daemon is runner.flow.daemon's."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def on_engine(a: argparse.Namespace, run: Callable[[], int]) -> int:
    """Run `run` with DOCKER_HOST naming a daemon that answers, starting the embedded one if need be."""
    from runner.flow.daemon import local_daemon

    with local_daemon(a.keep_engine, lambda line: print(line, file=sys.stderr, flush=True)):
        return run()


def build(a: argparse.Namespace) -> int:
    from runner.cli import release
    from runner.cli.inspect import selected_targets

    # bad input is said before any daemon starts
    selected_targets(a)
    release._writable(a.report, "report file")
    return on_engine(a, lambda: release.build(a))
