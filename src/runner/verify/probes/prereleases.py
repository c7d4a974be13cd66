# Probe: no pre-release package in the image unless its recipe allows one for that package. Runs
# inside the image under test; runner puts `INPUT = {...}` above this text: the allowed names.
import re
import sys

try:
    from importlib import metadata
except ImportError:  # Python 3.7
    import importlib_metadata as metadata

PRE = re.compile(r"(?i)(\d)[._-]?(a|alpha|b|beta|c|rc|pre|preview)[._-]?\d*|\.?dev\d*")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


allowed = {norm(n) for n in INPUT["allowed"]}  # noqa: F821 - INPUT is put above this text by runner
found = sorted({(norm(d.metadata["Name"] or ""), d.version) for d in metadata.distributions()
                if d.metadata["Name"] and PRE.search(d.version.split("+")[0])})
bad = [(n, v) for n, v in found if n not in allowed]
for n, v in found:
    print("%s %s %s" % (n, v, "(allowed by the recipe)" if n in allowed else "PRE-RELEASE"))
sys.exit(1 if bad else 0)
