"""Offline commands: the matrix, image names, the catalog, the schema, the plan, Dockerfiles, device
profiles and run lines. None of them needs a daemon or a registry."""

from __future__ import annotations

import argparse
import json
import sys


def _project(a: argparse.Namespace):
    from runner.compose.project import load_project

    return load_project(a.matrix)


def selected_targets(a: argparse.Namespace):
    """The project and the targets the command line's filters select."""
    from runner.ui.selection import selected

    project = _project(a)
    return project, selected(project, selection_of_args(a))


def selection_of_args(a: argparse.Namespace):
    from runner.ui.selection import selection_of

    return selection_of(a.backend, a.backend_version, a.variant, a.service, a.service_version,
                        getattr(a, "platform", "") or "", getattr(a, "include_deprecated", True),
                        backend_version_prefix=a.backend_version_prefix, service_version_prefix=a.service_version_prefix,
                        select=a.select, skip=a.skip)


def matrix(a: argparse.Namespace) -> int:
    project, targets = selected_targets(a)
    if a.format == "json":
        from runner.ui.selection import target_json

        print(json.dumps([target_json(t) for t in targets], indent=1))
    elif a.format == "tags":
        print("\n".join(t.tag for t in targets))
    elif a.format in ("github", "gitlab"):
        from runner.flow.release import Release
        from runner.release import fanout

        if a.format == "github":
            print(json.dumps(fanout.github(Release(project, targets=targets).jobs, selection_of_args(a))))
        else:  # the child pipelines by file name: one per backend when there are several
            print(json.dumps(fanout.gitlab_files(targets, selection_of_args(a),
                                                 lambda some: Release(project, targets=some).jobs)))
    else:
        from runner.ui.tables import matrix_table, print_rich, styled

        print_rich(matrix_table(targets, marks=styled()))
    return 0


def parse(a: argparse.Namespace) -> int:
    """Every name read; each bad one is reported (exit 2 once all are read)."""
    from runner.model.errors import ErrorList, UserError

    parser = _project(a).parser
    bad: list[UserError] = []
    for ref in a.images:
        try:
            print(json.dumps(parser.parse(ref).as_dict()))
        except UserError as e:
            bad.append(UserError(f"{ref}: {e}"))
    if bad:
        raise ErrorList(bad)
    return 0


def catalog(a: argparse.Namespace) -> int:
    from runner.model import catalog as catalog_mod

    if a.history:
        from runner.cli.history import history

        return history(a)
    if a.diff:
        from runner.cli.catalog_diff import catalog_diff

        return catalog_diff(a)
    if a.file:
        records = catalog_mod.load(a.file)
    else:
        from runner.compose.catalog_records import catalog_records

        project = _project(a)
        records = catalog_records(project, project.targets, project.image)
        if not a.write:  # the same filter validation as matrix, plan and build
            project.select(selection_of_args(a))
    if a.write:
        catalog_mod.write(a.write, records)
        print(f"wrote {len(records)} records to {a.write}", file=sys.stderr)
        return 0
    records = selection_of_args(a).records(records)
    if not records:
        from runner.model.errors import UserError

        raise UserError("the filters select no catalog record", hint="list the records with `runner catalog`")
    if a.format == "json":
        print(json.dumps([r.as_json() for r in records], indent=1))
    else:
        from runner.ui.tables import catalog_table, print_rich

        print_rich(catalog_table(records))
    return 0


def schema(a: argparse.Namespace) -> int:
    from runner.compose.schema import matrix_schema

    print(json.dumps(matrix_schema(a.pack), indent=2))
    return 0


def plan(a: argparse.Namespace) -> int:
    """The stage DAG, then the static checks over it: any finding exits 2."""
    from runner.compose.checks import check_stages, not_checked
    from runner.flow.release import Release

    project, targets = selected_targets(a)
    release = Release(project, targets=targets)
    the_plan = release.plan
    findings = check_stages(the_plan.stages)
    patches = _patch_checks(project, the_plan) if not a.ci else []
    failed = [c for c in patches if c.status == "fails"]
    if a.ci:
        _ci_jobs(release.jobs, a.format, a.runners)
    elif a.format == "json":
        print(json.dumps({**the_plan.to_json(), "findings": [f.__dict__ for f in findings],
                          "patches": [c.to_json() for c in patches]}, indent=1))
    else:
        from runner.ui.tables import plan_tree, print_rich

        print_rich(plan_tree(the_plan))
    for f in findings:
        print(f"runner: error: {f}", file=sys.stderr)
    for c in patches:
        if c.status != "applies":
            print(f"runner: {'error: ' if c.status == 'fails' else ''}{c}", file=sys.stderr)
    for note in not_checked():
        print(f"runner: {note}", file=sys.stderr)
    from runner.flow.official_lock import unpinned

    if (loose := unpinned(project, targets)):
        print(f"runner: not pinned: {len(loose)} official images the selection layers have no digest in "
              "pack/<backend>/official.lock.yaml; they build from their tags, and a release refuses them "
              "(`runner official --lock`)", file=sys.stderr)
    print(f"runner: {checks_line(the_plan, findings, patches)}", file=sys.stderr)
    return 2 if findings or failed else 0


def checks_line(the_plan, findings: list, patches: list) -> str:
    """What `runner plan`'s checks ran over and found, in one line (its last)."""
    from runner.compose.checks import distinct_scripts, not_checked

    shell = sum(f.check == "shellcheck" for f in findings)
    scripts = len(distinct_scripts(the_plan.stages))
    count = lambda n, what: f"{n} {what}{'s' * (n != 1)}"  # noqa: E731
    shellcheck = (f"shellcheck over {count(scripts, 'distinct script')}: {count(shell, 'finding')}" if not not_checked()
                  else f"shellcheck not run over {count(scripts, 'distinct script')} (not installed)")
    states = {s: sum(c.status == s for c in patches) for s in ("applies", "fails", "not-checked")}
    return (f"checks ran: static checks over {count(the_plan.distinct_stages, 'stage')}: "
            f"{count(len(findings) - shell, 'finding')}; {shellcheck}; patches: {count(len(patches), 'check')}, "
            f"{states['applies']} apply, {states['fails']} fail, {states['not-checked']} not checked here")


def _patch_checks(project, the_plan) -> list:
    """Every patch the plan applies, applied to the real source of its version (runner.verify.patches):
    a check that needs the sources, so it runs here, after the static checks."""
    from runner.verify.patches import check_patches

    return check_patches(the_plan.stages, pack=project.pack_path)


def components(a: argparse.Namespace) -> int:
    from runner.flow.release import Release
    from runner.ui import components as view

    project, targets = selected_targets(a)
    records = view.rows(Release(project, targets=targets).plan, project.recipes)
    if a.format == "json":
        print(json.dumps(records, indent=1))
    elif a.format == "markdown":
        for backend in dict.fromkeys(r["backend"] for r in records):
            sys.stdout.write(view.markdown([r for r in records if r["backend"] == backend], backend))
    else:
        from runner.ui.tables import print_rich

        print_rich(view.table(records))
    return 0


def _ci_jobs(jobs, form: str, runners: int) -> None:
    from runner.compose.schedule import model
    from runner.ui.release_report import ci_plan_lines

    figures, schedule = jobs.figures(), model(jobs, runners).as_dict()
    if form == "json":
        print(json.dumps({"figures": figures, "schedule": schedule, "jobs": [j.as_dict() for j in jobs.jobs]}, indent=1))
        return
    print("\n".join(ci_plan_lines(figures, schedule)))


def dockerfile(a: argparse.Namespace) -> int:
    from runner.compose.dockerfile import render

    project = _project(a)
    sys.stdout.write(render(project.leaf_stage(a.tag, a.platform), a.form, project.mirror_map()).text)
    return 0


def profile(a: argparse.Namespace) -> int:
    from runner.model.errors import UserError
    from runner.verify.profiles import load_profile

    project = _project(a)
    if a.backend not in project.services:
        raise UserError("unknown backend", value=a.backend, allowed=sorted(project.services))
    found = load_profile(project.pack_path, a.backend)
    if a.gpustack:
        return _compare_profile(project, a.backend, found, a.format)
    data = found.model_dump()
    if a.format == "json":
        print(json.dumps(data, indent=2))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump({a.backend: data}, sort_keys=False))
    return 0


def _compare_profile(project, backend: str, found, form: str) -> int:
    from runner.verify.profiles import consumer_differences, load_runtime_profiles

    runtime = load_runtime_profiles(project.pack_path)
    differ, problems = consumer_differences(found, runtime, backend)
    rows = [{"field": f, "runner": ours, "gpustack_runtime": theirs, "why": found.gpustack.get(f, "")}
            for f, (ours, theirs) in differ.items()]
    if form == "json":
        print(json.dumps({"gpustack_runtime": runtime["gpustack_runtime"], "differences": rows, "problems": problems},
                         indent=1))
    else:
        for r in rows:
            print(f"{r['field']}: runner {r['runner']!r}, gpustack-runtime {r['gpustack_runtime']!r}\n    {r['why']}")
    for p in problems:
        print(f"runner: error: {p}", file=sys.stderr)
    return 1 if problems else 0


def run_command(a: argparse.Namespace) -> int:
    from runner.verify.profiles import load_profile, run_command as docker_run, shell_line, started_lines

    project = _project(a)
    t = project.target(a.tag)
    image = project.image(t.tag, a.registry)
    devices = _devices(a.devices)
    if a.device_check:
        profile = load_profile(project.pack_path, t.backend, t.variant)
        print(shell_line(docker_run(profile, image, ["sh", "-c", profile.device_check], devices)))
        return 0
    from runner.verify.consumer import load_record, load_spec

    record = load_record(project.pack_path)
    declared = {d.name: d for d in load_spec(project.pack_path).deployments}
    follower = declared[a.deployment].follower if a.deployment in declared else None
    worker = record.followers[follower] if follower is not None else record.leader
    addresses = {k: v for k, v in ((worker, a.worker_ip), (record.leader, a.leader_ip)) if v and k}
    if a.files:
        a.files.mkdir(parents=True, exist_ok=True)
    for line in started_lines(project.pack_path, t, image, a.deployment, devices, addresses, a.files):
        print(line)
    return 0


def _devices(text: str) -> list[int] | None:
    """--devices: comma-separated device indices (0,1), or None for the default."""
    if not text:
        return None
    from runner.model.errors import UserError

    parts = text.split(",")
    if not all(p.isascii() and p.isdigit() and len(p) <= 4 for p in parts):
        raise UserError("malformed --devices", value=text, allowed="comma-separated device indices, e.g. 0,1")
    return [int(p) for p in parts]
