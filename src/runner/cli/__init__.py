"""The `runner` command: one face over the walk (matrix -> targets -> plan -> engine -> smoke ->
publish -> report). Arguments are declared in runner.cli.parser; each handler returns an exit code.
May import every layer below the faces (through runner.ui for what it shares), never runner.dagger;
the engines, the registry client and the stage plan only through runner.flow."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from runner.model.errors import Failed, InfrastructureError, UserError


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `runner` subcommand; user mistakes print one line and exit 2, never a traceback."""
    from runner.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    module, _, name = args.handler.partition(":")
    try:
        code = getattr(importlib.import_module(module), name)(args)
    except UserError as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return e.exit_code
    except InfrastructureError as e:
        print(f"runner: infrastructure error: {e}; nothing is wrong with the input: {e.advice}", file=sys.stderr)
        return e.exit_code
    except Failed as e:
        print(f"runner: failed: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return code or 0
