"""`runner outdated` without its printing: ask the package index, propose matrix lines, make the edit
(validated as a whole matrix before anyone writes it), diff the catalogs, and resolve the proposed
images with the same code `runner resolve` runs."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.compose.official import official_images
from runner.compose.outdated import Outdated, index_packages, newer_pins, propose
from runner.model.catalog_diff import CatalogDiff, diff
from runner.model.errors import UserError
from runner.verify.resolver import StepReport

CONTAINER_REGISTRIES_NOT_CHECKED = ("the tags of the official and base images ({}) on their container registries: "
                                    "not reachable from here")


@dataclass
class OutdatedRun:
    """What one run found and proposes; new_text is None when nothing is proposed or the edit is invalid."""

    outdated: Outdated
    old_text: str
    new_text: str | None = None
    invalid: str = ""  # why the edited matrix does not validate (then nothing is written)
    unplanned: str = ""  # why the recipes cannot plan the proposed images (then nothing is resolved)
    catalog: CatalogDiff | None = None
    reports: list[StepReport] = field(default_factory=list)
    resolved_images: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    @property
    def conflicts(self) -> list[StepReport]:
        return [r for r in self.reports if r.status == "conflict"]


def base_repositories(data: dict) -> list[str]:
    """The repositories of every base image template of the matrix (their tags are what a registry tells)."""
    found = set()
    for backend in data.get("backends", {}).values():
        for holder in [backend, *backend.get("releases", [])]:
            for entries in [[holder], *holder.get("services", {}).values()]:
                for e in entries:
                    if isinstance(e, dict) and e.get("base_image"):
                        found.add(str(e["base_image"]).rpartition(":")[0])
    return sorted(found)


def check(project, services: list[str] | None = None, resolve: bool = True, jobs: int = 4) -> OutdatedRun:
    """One whole run over `project` (runner.compose.project.Project); see the module's docstring."""
    from runner.compose.matrix_edit import apply
    from runner.model.files import read_text
    from runner.model.marked_yaml import load_marked
    from runner.verify.package_index import all_versions

    clock = time.monotonic()
    text = read_text(project.matrix_path, "matrix file")
    doc = load_marked(text, str(project.matrix_path))
    index = all_versions(index_packages())
    seconds = {"index": time.monotonic() - clock}
    outdated = propose(doc.data, index, services)
    official = sorted({o.image.rsplit(":", 1)[0] for o in official_images(project, project.targets)})
    outdated.not_checked.append(CONTAINER_REGISTRIES_NOT_CHECKED.format(", ".join([*base_repositories(doc.data), *official])))
    from runner.compose.catalog_records import catalog_records

    before = catalog_records(project, project.targets, project.image)
    newer_pins(before, index, outdated)
    run = OutdatedRun(outdated, text, seconds=seconds)
    if not outdated.proposals:
        return run
    clock = time.monotonic()
    new_text = apply(text, doc, [p.insertion for p in outdated.proposals])
    try:
        edited = _load_edited(project, new_text)
    except UserError as e:
        run.invalid = str(e)
        return run
    run.new_text = new_text
    run.catalog = diff(before, catalog_records(edited, edited.targets, edited.image),
                       f"{project.matrix_path.name} today", f"{project.matrix_path.name} proposed")
    seconds["edit and catalog"] = time.monotonic() - clock
    if resolve:
        clock = time.monotonic()
        added = {c.tag for c in run.catalog.changes if c.kind == "added"}
        try:
            run.reports, run.resolved_images = _resolve(edited, [t for t in edited.targets if t.tag in added], jobs)
        except UserError as e:  # a recipe that has no pins for a new version yet says so here
            run.unplanned = str(e)
        seconds["resolve"] = time.monotonic() - clock
    return run


def _load_edited(project, text: str):
    """The project as the edited matrix makes it, validated against the same pack/ (nothing is written)."""
    from runner.compose.project import load_project

    with tempfile.TemporaryDirectory(prefix="runner-outdated-") as folder:
        path = Path(folder) / project.matrix_path.name
        path.write_text(text, encoding="utf-8")
        edited = load_project(path, project.pack_path)
        _ = edited.recipes  # the recipes load now, while the edited file exists
    return edited


def _resolve(project, targets, jobs: int) -> tuple[list[StepReport], int]:
    """runner resolve's code path over the proposed images only."""
    import anyio

    from runner.compose.plan import make_plan
    from runner.verify.resolver import Resolver, resolve_all

    plan = make_plan(targets, project.recipes)
    reports = anyio.run(resolve_all, plan.leaves, project.mirror_map(), Resolver(jobs=jobs), lambda r: None, True)
    return reports, len(plan.leaves)
