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


# A registry host (with its port) and a path under it, as image references are written in full
# (docker.io/ascendai, quay.io/ascend, 10.0.0.5:5000/mirror): lower case, no scheme, no tag.
_IMAGE_PREFIX_RE = re.compile(r"[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*")


def check_mirror_key(value: str, what: str = "mirror") -> str:
    """A mirror's side: a URL prefix (indexes, downloads) or an image prefix (base images)."""
    if isinstance(value, str) and "://" not in value:
        if not _IMAGE_PREFIX_RE.fullmatch(value):
            raise ValueError(f"malformed {what} {value!r} (allowed: a URL, or an image prefix: a registry host "
                             "and path such as docker.io/ascendai)")
        return value
    return check_url(value, f"{what} URL")
