# Probe: what the image's environment claims. Runs inside the image under test; runner puts
# `INPUT = {...}` above this text: the recipe's *_HOME, *_PREFIX, *_PATH-like values, and the PATH
# entries every base image has. Each value must name something that exists (every entry of a list);
# PATH must still hold the base entries (a recipe may extend PATH, never replace it).
import os
import sys

problems = []
for name, value in sorted(INPUT["places"].items()):  # noqa: F821 - INPUT is put above this text by runner
    actual = os.environ.get(name)
    if actual is None:
        problems.append("%s is not set (the recipe sets %s)" % (name, value))
        continue
    for entry in [e for e in actual.split(":") if e]:
        if not os.path.exists(entry):
            problems.append("%s names %s, which does not exist in the image" % (name, entry))
path = os.environ.get("PATH", "").split(":")
missing = [p for p in INPUT["path_keeps"] if p not in path]  # noqa: F821
if missing:
    problems.append("PATH lost the base image's %s: PATH=%s" % (", ".join(missing), ":".join(path)))
for p in problems:
    print(p)
print("%d places checked, %d problems" % (len(INPUT["places"]), len(problems)))  # noqa: F821
sys.exit(1 if problems else 0)
