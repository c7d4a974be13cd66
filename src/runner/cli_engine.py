"""`runner build|publish|promote|discard|prune --engine docker`: the release flow on a local Docker."""

from __future__ import annotations


def add_commands(sub, selection_args) -> None:
    """Register the engine subcommands (filled in with the Docker engine)."""
