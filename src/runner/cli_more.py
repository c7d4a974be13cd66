"""CLI commands beyond the offline core: device profiles and, later, engines. Kept apart so the
core commands stay quick to load."""

from __future__ import annotations

import argparse


def add_commands(sub, selection_args) -> None:
    """Register the extra subcommands on the `runner` parser."""
