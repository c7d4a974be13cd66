"""Where a catalog to compare comes from: a catalog file (ours, or gpustack-runner's packaged
`runner.py.json`, the same format), a gpustack-runner wheel, or a git revision of this repository.

Every source is read offline. A mistake names the file, the line, the offending value and what is
allowed (UserError, exit 2).
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from runner.model.catalog import RunnerRecord
from runner.model.errors import UserError, Where

CATALOG_IN_REPO = "src/runner/catalog.json"
CATALOG_IN_WHEEL = "gpustack_runner/runner.py.json"
ALLOWED = ("a catalog file (JSON list of records)", "a gpustack-runner wheel (.whl)",
           f"a git revision of this repository (REV, or REV:PATH; PATH defaults to {CATALOG_IN_REPO})")


def parse_records(text: str, label: str) -> list[RunnerRecord]:
    """Records of a catalog text; a syntax error or a bad record names its line and field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"not JSON: {e.msg}", where=Where(label, e.lineno, e.colno),
                        hint="a catalog is the JSON list `runner catalog --write PATH` writes") from None
    if not isinstance(data, list):
        raise UserError("not a runner catalog", where=Where(label, 1), value=type(data).__name__,
                        allowed="a JSON list of records")
    lines = _item_lines(text)
    out = []
    for index, item in enumerate(data):
        try:
            out.append(RunnerRecord.model_validate(item))
        except ValidationError as e:
            err = e.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or "record"
            value = item.get(err["loc"][0]) if isinstance(item, dict) and err["loc"] else item
            raise UserError(f"record {index + 1}, {name}: {err['msg']}", where=Where(label, lines[index]),
                            value=value, allowed=_allowed(err)) from None
    return out


def _allowed(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return ", ".join(RunnerRecord.model_fields)
    if err["type"] == "missing":
        return "every field of " + ", ".join(n for n, f in RunnerRecord.model_fields.items() if f.is_required())
    return {"bool_type": "true or false", "string_type": "a string"}.get(err["type"], "")


def _item_lines(text: str) -> list[int]:
    """The 1-based line each top-level list item starts on (the text is known to be a JSON list)."""
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    lines: list[int] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)


def load_source(spec: str, repo: Path | None = None) -> tuple[list[RunnerRecord], str]:
    """The records of a catalog source and a label for it (see ALLOWED); repo: the git work tree that
    revisions are read from (default: the current directory's)."""
    path = Path(spec)
    if path.is_file():
        if path.suffix == ".whl":
            return _from_wheel(path), f"{path.name}:{CATALOG_IN_WHEEL}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{spec}: unreadable catalog file: {e}") from None
        return parse_records(text, spec), spec
    if path.exists():
        raise UserError("not a catalog file", value=spec, allowed=ALLOWED)
    rev, _, inner = spec.partition(":")
    inner = inner or CATALOG_IN_REPO
    return parse_records(_git_show(rev, inner, spec, repo), f"{rev}:{inner}"), f"{rev}:{inner}"


def _from_wheel(path: Path) -> list[RunnerRecord]:
    try:
        with zipfile.ZipFile(path) as wheel:
            text = wheel.read(CATALOG_IN_WHEEL).decode("utf-8")
    except KeyError:
        raise UserError(f"{path}: the wheel has no {CATALOG_IN_WHEEL}", allowed="a gpustack-runner wheel") from None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable wheel: {e}", allowed="a gpustack-runner wheel") from None
    return parse_records(text, f"{path}:{CATALOG_IN_WHEEL}")


def _git_show(rev: str, inner: str, spec: str, repo: Path | None) -> str:
    if not rev or rev.startswith("-"):  # never an option to git
        raise UserError("not a catalog source", value=spec, allowed=ALLOWED)
    try:
        done = subprocess.run(["git", "show", f"{rev}:{inner}", "--"], cwd=repo, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"{spec}: git could not read it: {e}", allowed=ALLOWED) from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError("no such file, wheel or git revision", value=spec, allowed=ALLOWED,
                        hint=f"git: {why[0] if why else 'failed'}")
    return done.stdout.decode("utf-8", errors="replace")
