"""URLs the matrix and the mirror map accept (kept apart from the matrix models, so that reading a
mirror map needs no validation library)."""

from __future__ import annotations

import re

_URL_RE = re.compile(r"^(https?|file)://[^\s\"'`$\\]+$")


def check_url(value: str, what: str = "mirror URL") -> str:
    """An http(s) or file URL without spaces, quotes or shell expansions."""
    if not isinstance(value, str) or not _URL_RE.match(value):
        raise ValueError(f"malformed {what} {value!r} (allowed: http://, https:// or file:// URLs without spaces, "
                         "quotes or $)")
    return value
