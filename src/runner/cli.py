"""The `runner` command: the matrix, names, catalog, plan and Dockerfiles offline, and builds on a
local Docker/BuildKit (`--engine docker`) for hosts that cannot run the Dagger engine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.errors import UserError


def _selection_args(p: argparse.ArgumentParser, platform: bool = True) -> None:
    p.add_argument("--matrix", type=Path, help="matrix file (default: the project's matrix.yaml)")
    p.add_argument("--backend", default="", help="only this backend, e.g. cann")
    p.add_argument("--backend-version", default="", help="backend version, exact or dotted prefix (12.8, 12)")
    p.add_argument("--variant", default="", help="backend variant, e.g. 910b")
    p.add_argument("--service", default="", help="only this service, e.g. vllm")
    p.add_argument("--service-version", default="", help="service version, exact or dotted prefix")
    if platform:
        p.add_argument("--platform", default="", help="only this platform, e.g. linux/amd64")
    p.add_argument("--exclude-deprecated", action="store_true", help="leave deprecated service versions out")


def _selection(a: argparse.Namespace):
    from runner.targets import Selection

    return Selection(a.backend, a.backend_version, a.variant, a.service, a.service_version,
                     getattr(a, "platform", "") or "", not a.exclude_deprecated)


def _selected(a: argparse.Namespace):
    from runner.project import load_project

    project = load_project(a.matrix)
    return project, project.select(_selection(a))


def target_json(t) -> dict:
    return {"backend": t.backend, "backend_version": t.backend_version,
            "original_backend_version": t.original_backend_version, "backend_variant": t.variant,
            "service": t.service, "service_version": t.service_version, "platforms": list(t.platforms),
            "tag": t.tag, "status": t.status, "python": t.python, "archs": list(t.archs), "base_image": t.base_image}


def cmd_matrix(a: argparse.Namespace) -> None:
    project, targets = _selected(a)
    if a.format == "json":
        print(json.dumps([target_json(t) for t in targets], indent=1))
    elif a.format == "tags":
        print("\n".join(t.tag for t in targets))
    else:
        from runner.show import matrix_table, print_rich

        print_rich(matrix_table(targets))


def cmd_parse(a: argparse.Namespace) -> None:
    from runner.project import load_project

    parser = load_project(a.matrix).parser
    for ref in a.images:
        print(json.dumps(parser.parse(ref).as_dict()))


def cmd_catalog(a: argparse.Namespace) -> None:
    from runner import catalog

    if a.file:
        records = catalog.load(a.file)
    else:
        from runner.project import load_project

        project = load_project(a.matrix)
        records = catalog.records(project.targets, project.image)
    if a.write:
        catalog.write(a.write, records)
        print(f"wrote {len(records)} records to {a.write}", file=sys.stderr)
        return
    records = catalog.filter_records(records, a.backend or None, a.backend_version or None,
                                     a.variant if a.variant else None, a.service or None,
                                     a.service_version or None, a.platform or None, a.with_deprecated)
    if a.format == "json":
        print(json.dumps([r.model_dump() for r in records], indent=1))
    else:
        from runner.show import catalog_table, print_rich

        print_rich(catalog_table(records))


def cmd_schema(a: argparse.Namespace) -> None:
    from runner.schema import matrix_schema

    print(json.dumps(matrix_schema(a.pack), indent=2))


def cmd_plan(a: argparse.Namespace) -> None:
    from runner.plan import make_plan

    project, targets = _selected(a)
    plan = make_plan(targets, project.recipes)
    if a.format == "json":
        print(json.dumps(plan.to_json(), indent=1))
    else:
        from runner.show import plan_tree, print_rich

        print_rich(plan_tree(plan))


def cmd_dockerfile(a: argparse.Namespace) -> None:
    from runner.dockerfile import render
    from runner.project import load_project

    sys.stdout.write(render(load_project(a.matrix).leaf_stage(a.tag, a.platform), a.form).text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="runner", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("matrix", help="list the targets of the matrix")
    _selection_args(p)
    p.add_argument("--format", choices=("table", "json", "tags"), default="table")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("parse", help="read runner image references into their fields (JSON lines)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--matrix", type=Path)
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("catalog", help="the consumer catalog: one record per target and platform")
    _selection_args(p)
    p.add_argument("--with-deprecated", action="store_true", help="include deprecated service versions")
    p.add_argument("--file", type=Path, help="read this catalog file instead of the matrix")
    p.add_argument("--write", type=Path, help="write the whole catalog to this file (atomically)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("schema", help="print the JSON Schema of matrix.yaml")
    p.add_argument("--pack", type=Path, help="pack folder whose recipes name the backends")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plan", help="the stage DAG shared across the selected targets")
    _selection_args(p)
    p.add_argument("--format", choices=("tree", "json"), default="tree")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("dockerfile", help="render one target's stages as a multi-stage Dockerfile")
    p.add_argument("tag", metavar="TAG")
    p.add_argument("--platform", default="")
    p.add_argument("--form", choices=("heredoc", "compat"), default="heredoc",
                   help="compat: no heredocs, for built-in frontends such as Docker 20.10's")
    p.add_argument("--matrix", type=Path)
    p.set_defaults(func=cmd_dockerfile)

    from runner import cli_more

    cli_more.add_commands(sub, _selection_args)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return getattr(args, "exit_code", 0)
