"""Selections as both faces accept them (the same filters on the command line and in `dagger call`),
and targets as the JSON both faces print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.model.targets import Selection, Target

if TYPE_CHECKING:
    from runner.compose.project import Project


def selection_of(backend: str = "", backend_version: str = "", variant: str = "", service: str = "",
                 service_version: str = "", platform: str = "", include_deprecated: bool = True,
                 **more: str) -> Selection:
    """A Selection from the filter values either face received (empty: no filter); `more` takes the
    other Selection fields by name (backend_version_prefix, service_version_prefix, select, skip)."""
    return Selection(backend, backend_version, variant, service, service_version, platform, include_deprecated, **more)


def selected(project: Project, selection: Selection) -> list[Target]:
    """The targets of a selection; a name that matches nothing, or an empty result, is a UserError."""
    return project.select(selection)


def target_json(t: Target) -> dict:
    """A target as JSON: every field a consumer or a CI job needs to name and build it."""
    return {"backend": t.backend, "backend_version": t.backend_version,
            "original_backend_version": t.original_backend_version, "backend_variant": t.variant,
            "service": t.service, "service_version": t.service_version, "platforms": list(t.platforms),
            "tag": t.tag, "status": t.status, "python": t.python, "archs": list(t.archs), "base_image": t.base_image}


def summary_lines(report: dict) -> list[str]:
    """One line per target and platform of a build report: passed, or what failed."""
    lines = []
    for r in report["images"]:
        if r["smoke"]["passed"]:
            state = "passed"
        else:
            state = "FAILED " + (r["error"][:200] or ", ".join(r["smoke"]["failed"]) or "no checks ran")
        lines.append(f"{r['tag']:<42} {r['platform']:<12} {r['build_seconds']:>8.1f}s  {state}")
    return lines


def selection_json(selection: Selection) -> str:
    return selection.to_json()


def selection_from_json(text: str) -> Selection:
    return Selection.from_json(text)


def publication_lines(pubs: list[Any]) -> list[str]:
    """One line per tag of a publish or merge: its -dev index, or why it was not (fully) published."""
    lines = []
    for p in pubs:
        if p.skipped:
            lines.append(f"{p.tag:<42} NOT PUBLISHED: {p.skipped}")
        elif p.note:
            lines.append(f"{p.tag:<42} single-arch pushed ({', '.join(sorted(p.platforms))}); {p.note}")
        elif p.dev_ref:
            state = "written" if p.index_changed else "unchanged"
            lines.append(f"{p.tag:<42} {p.dev_ref.rsplit(':', 1)[1]} {p.digest[:19]} ({state})")
        else:
            lines.append(f"{p.tag:<42} single-arch pushed ({', '.join(sorted(p.platforms))})")
    return lines


def promotion_lines(results: list[Any]) -> list[str]:
    """One line per promoted target: its digest and whether the final tag moved."""
    return [f"{r.tag:<42} " + (f"NOT PROMOTED: {r.skipped}" if r.skipped else
                               f"{r.digest[:19]} ({'promoted' if r.changed else 'unchanged'})") for r in results]
