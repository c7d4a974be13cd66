"""YAML loading that remembers where every value came from, for errors that name file:line:col.

Scalars stay strings (``12.3`` is the version "12.3", not a float), booleans and nulls excepted,
and a key written twice in one mapping is an error rather than a silent overwrite. Hostile input is a
clear error, not a crash: nesting deeper than MAX_DEPTH (checked in the text before libyaml, whose
C composer recurses, sees it), more than MAX_VALUES values once aliases are expanded (an alias bomb),
a recursive alias, control characters, non-UTF-8 bytes and explicit tags (`!!python/object`...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runner.model.errors import UserError, Where

Path_ = tuple[str | int, ...]
MAX_DEPTH = 64  # matrix.yaml nests 8 deep
MAX_VALUES = 200_000  # values after alias expansion; matrix.yaml has about 2,000
MAX_BYTES = 4 * 1024 * 1024


# libyaml's parser when PyYAML has it: the pure-Python one is several times slower on matrix.yaml.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_PLAIN_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in ("str", "seq", "map", "bool", "null")}


class _StringLoader(_Base):  # type: ignore[misc, valid-type]
    """A safe loader whose implicit resolvers know only booleans and null."""


_StringLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.endswith((":bool", ":null"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class MarkedDocument:
    """A parsed YAML document plus the source position of each value, keyed by its path."""

    def __init__(self, file: str, data: Any, marks: dict[Path_, tuple[int, int]],
                 key_marks: dict[Path_, tuple[int, int]] | None = None) -> None:
        self.file = file
        self.data = data
        self.marks = marks
        self.key_marks = key_marks or {}

    def where_key(self, path: Path_) -> Where:
        """Position of the mapping key that names `path` (for 'unknown key/name' errors)."""
        if (found := self.key_marks.get(tuple(path))) is not None:
            return Where(self.file, *found)
        return self.where(path)

    def where(self, path: Path_) -> Where:
        """The closest known position for a path (falls back to its nearest marked parent)."""
        path = tuple(path)
        while path and path not in self.marks:
            path = path[:-1]
        line, col = self.marks.get(path, (1, 1))
        return Where(self.file, line, col)


def load_marked(text: str, file: str) -> MarkedDocument:
    """Parse YAML text; raise UserError (with line and column) on a syntax error, a duplicate key or
    input beyond the limits."""
    _check_flow_depth(text, file)
    try:
        node = yaml.compose(text, Loader=_StringLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Where(file, mark.line + 1, mark.column + 1) if mark else Where(file)
        raise UserError(f"YAML syntax error: {e.problem or e}", where=where) from None
    except yaml.reader.ReaderError as e:  # a control character: a position, no mark
        line = text.count("\n", 0, e.position) + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise UserError(f"YAML cannot hold the character #x{char:02x} (control characters are not allowed)",
                        where=Where(file, line)) from None
    except yaml.YAMLError as e:
        raise UserError(f"YAML error: {e}", where=Where(file)) from None
    marks: dict[Path_, tuple[int, int]] = {}
    key_marks: dict[Path_, tuple[int, int]] = {}
    budget = [MAX_VALUES]
    data = _construct(node, (), marks, key_marks, file, budget) if node is not None else None
    return MarkedDocument(file, data, marks, key_marks)


def load_marked_file(path: Path) -> MarkedDocument:
    """Read and parse a YAML file (see load_marked): a regular UTF-8 file of at most MAX_BYTES."""
    from runner.model.files import read_text

    return load_marked(read_text(Path(path), "YAML file", MAX_BYTES), str(path))


def _check_flow_depth(text: str, file: str) -> None:
    """Refuse `[[[[...` nesting before the parser recurses into it (quoted text aside)."""
    depth, quote, line = 0, "", 1
    for ch in text:
        if ch == "\n":
            line += 1
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"YAML nested deeper than {MAX_DEPTH} levels", where=Where(file, line))
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == "#":
            quote = "\n"  # a comment runs to the end of the line


def _construct(node: yaml.Node, path: Path_, marks: dict, key_marks: dict, file: str, budget: list[int]) -> Any:
    where = (node.start_mark.line + 1, node.start_mark.column + 1)
    if len(path) > MAX_DEPTH:
        raise UserError(f"YAML nested deeper than {MAX_DEPTH} levels (or an alias that contains itself)",
                        where=Where(file, *where))
    budget[0] -= 1
    if budget[0] < 0:
        raise UserError(f"YAML holds more than {MAX_VALUES} values once its aliases are expanded",
                        where=Where(file, *where))
    marks[path] = where
    if node.tag not in _PLAIN_TAGS:  # only our resolvers' tags: anything else was written explicitly
        raise UserError("YAML tags are not allowed", where=Where(file, *where), value=node.tag,
                        hint="write plain values; runner reads strings, lists, mappings, booleans and null")
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, path + ("<key>",), {}, {}, file, budget)
            if not isinstance(key, str):
                at = Where(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                raise UserError("mapping keys must be names", where=at, value=key)
            if key in result:
                at = Where(file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                raise UserError("key written twice in one mapping", where=at, value=key)
            key_marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _construct(value_node, path + (key,), marks, key_marks, file, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(child, path + (i,), marks, key_marks, file, budget) for i, child in enumerate(node.value)]
    if node.tag.endswith(":bool"):
        return node.value.lower() in ("true", "yes", "on")
    if node.tag.endswith(":null"):
        return None
    return node.value


def load_model(path: Path, model):
    """Read a YAML file into a pydantic model; the first problem is reported with its file and line."""
    from pydantic import ValidationError

    doc = load_marked_file(path)
    try:
        return model.model_validate(doc.data or {})
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}", where=doc.where(err["loc"])) from None
