"""CLI commands beyond the offline core: device profiles and the Docker engine's release flow.
Kept apart so the core commands stay quick to load."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_profile(a: argparse.Namespace) -> None:
    from runner.profiles import load_profile
    from runner.project import load_project

    project = load_project(a.matrix)
    if a.backend not in project.services:
        from runner.errors import UserError

        raise UserError("unknown backend", value=a.backend, allowed=sorted(project.services))
    data = load_profile(project.pack_path, a.backend).model_dump()
    if a.format == "json":
        print(json.dumps(data, indent=2))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump({a.backend: data}, sort_keys=False))


def cmd_run_command(a: argparse.Namespace) -> None:
    from runner.profiles import load_profile, run_command, serve_command, shell_line
    from runner.project import load_project

    project = load_project(a.matrix)
    t = project.target(a.tag)
    profile = load_profile(project.pack_path, t.backend)
    command = ["sh", "-c", profile.device_check] if a.device_check else serve_command(t)
    devices = [int(x) for x in a.devices.split(",")] if a.devices else None
    print(shell_line(run_command(profile, project.image(t.tag, a.registry), command, devices)))


def add_commands(sub, selection_args) -> None:
    """Register the extra subcommands on the `runner` parser."""
    p = sub.add_parser("profile", help="the device profile of a backend: devices, mounts, variables, runtime")
    p.add_argument("--backend", required=True)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("--matrix", type=Path)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("run-command", help="the docker run line for a target on a host with its accelerator")
    p.add_argument("tag", metavar="TAG")
    p.add_argument("--devices", default="", help="device indices to expose, e.g. 0,1 (default 0)")
    p.add_argument("--device-check", action="store_true", help="run the tiny accelerator check instead of serving")
    p.add_argument("--registry", default="")
    p.add_argument("--matrix", type=Path)
    p.set_defaults(func=cmd_run_command)

    from runner import cli_engine

    cli_engine.add_commands(sub, selection_args)
