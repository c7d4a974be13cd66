"""URLs the matrix and the mirror map accept (kept apart from the matrix models, so that reading a
mirror map needs no validation library)."""

from __future__ import annotations

import re

# A mirror target is pasted into build scripts wherever its prefix stands, quoted or not: only characters
# no shell acts on (no ; & | < > ( ) { } [ ] * ? # ! ~ $ ` quotes, backslash or space).
_URL_RE = re.compile(r"(https?|file)://[A-Za-z0-9._:/@%+=,-]+")


def check_url(value: str, what: str = "mirror URL") -> str:
    """An http(s) or file URL made only of characters no shell acts on."""
    if not isinstance(value, str) or not _URL_RE.fullmatch(value):
        raise ValueError(f"malformed {what} {value!r} (allowed: http://, https:// or file:// URLs of letters, digits "
                         "and . _ : / @ % + = , -)")
    return value
