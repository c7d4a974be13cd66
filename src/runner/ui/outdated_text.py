"""`runner outdated`'s report: pull request text (markdown) and JSON from one run."""

from __future__ import annotations

import difflib


def matrix_diff(run, name: str = "matrix.yaml") -> str:
    """The proposed edit as a unified diff ("" when there is none)."""
    if run.new_text is None:
        return ""
    return "".join(difflib.unified_diff(run.old_text.splitlines(keepends=True), run.new_text.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))


def _resolve_summary(run) -> dict:
    by_status: dict[str, int] = {}
    for r in run.reports:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return {"images": run.resolved_images, "steps": len(run.reports), "by_status": by_status,
            "conflicts": [{"tag": r.tag, "platform": r.platform, "step": r.step, "title": r.title,
                           "message": r.message[:600]} for r in run.conflicts]}


def to_json(run, name: str = "matrix.yaml") -> dict:
    o = run.outdated
    return {"newer": o.anything_newer, "newest_on_index": o.newest,
            "proposals": [p.to_json() for p in o.proposals], "pins": [p.to_json() for p in o.pins],
            "waiting": o.waiting, "not_checked": o.not_checked, "invalid": run.invalid, "unplanned": run.unplanned,
            "matrix_diff": matrix_diff(run, name), "catalog_diff": run.catalog.to_json() if run.catalog else None,
            "resolve": _resolve_summary(run), "seconds": {k: round(v, 1) for k, v in run.seconds.items()}}


def markdown(run, name: str = "matrix.yaml") -> str:
    """The pull request's text: what is newer, the matrix edit, the catalog diff, the resolve."""
    o = run.outdated
    lines = ["## Newer releases on the package index", ""]
    if not o.anything_newer:
        lines.append("Nothing newer than the matrix and its pins.")
    for p in o.proposals:
        lines.append(f"- {p.backend} {p.release}: {p.service} {', '.join(p.versions)}")
    for pin in o.pins:
        lines.append(f"- pin {pin.package} ({pin.scope}): {pin.pinned} → {pin.newest} (pack/<backend>/recipe.py)")
    for title, items in (("Held back", o.waiting), ("Not checked here", o.not_checked)):
        if items:
            lines += ["", f"### {title}", "", *(f"- {item}" for item in items)]
    if run.invalid:
        lines += ["", f"The edited {name} does not validate, so nothing is written: {run.invalid}"]
    if diff_text := matrix_diff(run, name):
        lines += ["", f"### The edit to {name}", "", "```diff", diff_text.rstrip("\n"), "```"]
    if run.catalog:
        lines += ["", run.catalog.markdown(heading="###").rstrip("\n")]
    if run.unplanned:
        lines += ["", "### Resolve", "", f"Not resolved: the recipes cannot plan the proposed images: {run.unplanned}"]
    elif run.reports:
        s = _resolve_summary(run)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(s["by_status"].items()))
        lines += ["", "### Resolve", "", f"{s['images']} proposed images on their platforms, {s['steps']} install steps: {counts}."]
        lines += [f"- `{c['tag']}` {c['platform']} step {c['step']} ({c['title']}): "
                  f"{c['message'].splitlines()[0] if c['message'] else 'conflict'}" for c in s["conflicts"][:40]]
        if len(s["conflicts"]) > 40:
            lines.append(f"- … and {len(s['conflicts']) - 40} more (`--format json` lists them all)")
    return "\n".join(lines) + "\n"
