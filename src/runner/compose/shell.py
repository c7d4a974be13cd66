"""Values into bash: every value a recipe puts into a rendered script (a ref, a file name, an arch list,
a URL, a requirement) goes through `word`, so it reaches the command as exactly one argument.

`word` double-quotes the value and escapes everything bash would act on inside double quotes, except
the expansions a recipe means: `${NAME}` (a build argument or a loop variable) and `$(uname -m)`.
Single quotes would be wrong for those (`'v${VLLM_VERSION}'` reaches git literally), and no quotes
at all would let a value split into words or run a command. Data from matrix.yaml is also held to
strict patterns when it is loaded; this is the second fence, for whatever passes the first."""

from __future__ import annotations

import re

# The only expansions a rendered value may carry: a variable by name, and the machine's arch.
EXPANSION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$\(uname -m\)")
_SPECIAL = re.compile(r'([\\"$`])')  # what bash still interprets inside double quotes


def word(value: str) -> str:
    """`value` as one double-quoted bash word in which only `${NAME}` and `$(uname -m)` expand."""
    out, pos = [], 0
    for m in EXPANSION.finditer(value):
        out += [_SPECIAL.sub(r"\\\1", value[pos:m.start()]), m[0]]
        pos = m.end()
    out.append(_SPECIAL.sub(r"\\\1", value[pos:]))
    return '"' + "".join(out) + '"'


def words(values: list[str] | tuple[str, ...]) -> str:
    """Several values, each one word."""
    return " ".join(word(v) for v in values)
