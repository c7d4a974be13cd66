"""Textual edits of matrix.yaml that keep every comment, quote and line as written: a new service
version goes in front of its list, in the list's own style (flow `[a, b]` or block `- a`)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from runner.model.marked_yaml import MarkedDocument, Path_

KEPT_KEYS = ("platforms", "archs")  # what a new version inherits from the entry it goes in front of
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+/-]*$")


@dataclass(frozen=True)
class Insertion:
    """New entries (newest first) in front of the list at `path` (e.g. backends.cuda.releases.0.services.vllm)."""

    path: Path_
    entries: tuple[str, ...]  # each one YAML flow value: 0.15.1 or {version: 0.5.9, platforms: [linux/arm64]}


def _scalar(value: str) -> str:
    """A string as YAML writes it plainly, quoted where a YAML reader would see a number or a keyword."""
    if not _PLAIN.match(value) or value.lower() in ("true", "false", "null", "yes", "no", "on", "off"):
        return json.dumps(value)
    if re.fullmatch(r"\d+(\.\d+)?", value):  # 7.5 and 12 are numbers to a YAML reader; 0.15.1 is not
        return json.dumps(value)
    return value


def entry_text(version: str, like: object) -> str:
    """A list entry for `version` that keeps the platforms and archs of `like` (the entry it joins)."""
    kept = {k: like[k] for k in KEPT_KEYS if isinstance(like, dict) and k in like}
    if not kept:
        return _scalar(version)
    parts = [f"version: {_scalar(version)}"]
    parts += [f"{k}: [{', '.join(_scalar(str(v)) for v in values)}]" for k, values in kept.items()]
    return "{" + ", ".join(parts) + "}"


def apply(text: str, doc: MarkedDocument, insertions: Sequence[Insertion]) -> str:
    """The text with every insertion made (doc: the same text parsed, for positions)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    edits = []
    for ins in insertions:
        row, column = doc.marks[tuple(ins.path) + (0,)]  # 1-based, the first entry's first character
        offset = starts[row - 1] + column - 1
        before = lines[row - 1][:column - 1]
        if before.strip() == "-":  # block list: each new entry gets its own `- ` line, indented alike
            new = "".join(f"{entry}\n{before}" for entry in ins.entries)
        else:  # flow list
            new = "".join(f"{entry}, " for entry in ins.entries)
        edits.append((offset, new))
    for offset, new in sorted(edits, reverse=True):
        text = text[:offset] + new + text[offset:]
    return text
