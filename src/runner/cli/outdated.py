"""`runner outdated`: newer releases on the package index proposed as matrix lines, with the edit,
the catalog diff and the resolve of the proposed images; exit 1 when anything is newer (CI acts on it)."""

from __future__ import annotations

import argparse
import json
import sys


def outdated(a: argparse.Namespace) -> int:
    from runner.cli.inspect import _project
    from runner.ui.outdated_text import markdown, to_json
    from runner.verify.outdated_run import check

    project = _project(a)
    run = check(project, a.service or None, resolve=not a.no_resolve, jobs=a.jobs)
    name = project.matrix_path.name
    print(json.dumps(to_json(run, name), indent=1) if a.format == "json" else markdown(run, name).rstrip("\n"))
    if a.write and run.new_text is not None:
        from runner.model.files import write_atomic

        write_atomic(project.matrix_path, run.new_text, "matrix file")
        print(f"runner: wrote {len(run.outdated.proposals)} proposed lists to {project.matrix_path}", file=sys.stderr)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items())
    print(f"runner: outdated took {timing}", file=sys.stderr)
    return 1 if run.outdated.anything_newer else 0
