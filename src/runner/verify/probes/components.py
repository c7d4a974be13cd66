# Probe: every component the recipe declares is in the image. Runs inside the image under test;
# runner puts `INPUT = {...}` above this text: each component's Python distribution (whose version it
# prints for runner to compare with the declared one),
# modules that must import without an accelerator, paths that must exist, and native libraries
# whose dependencies must all resolve (`ldd`), except the driver libraries only a host with the
# device has.
import glob
import importlib
import os
import subprocess
import sys

try:
    from importlib import metadata
except ImportError:
    import importlib_metadata as metadata


def ldd_missing(path, driver):
    try:
        out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode(errors="replace")
    except OSError as e:
        return ["ldd: %s" % e]
    missing = [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]
    return [m for m in missing if not any(m.startswith(d) for d in driver)]


summary = []
for c in INPUT["components"]:  # noqa: F821 - INPUT is put above this text by runner
    problems = []
    if c["dist"]:
        try:
            # runner compares it with the declared version as versions (packaging), not here as text
            print("component-version %s %s" % (c["dist"], metadata.version(c["dist"])))
        except metadata.PackageNotFoundError:
            problems.append("%s is not installed" % c["dist"])
    for module in c["imports"]:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - the real error is the result
            problems.append("import %s: %s: %s" % (module, type(e).__name__, str(e)[:300]))
    for pattern in c["paths"]:
        if not glob.glob(os.path.expandvars(pattern)):
            problems.append("%s does not exist" % pattern)
    for pattern in c["libs"]:
        found = glob.glob(os.path.expandvars(pattern), recursive=True)
        if not found:
            problems.append("no library matches %s" % pattern)
        for lib in found:
            missing = ldd_missing(lib, INPUT["driver_libraries"])  # noqa: F821
            if missing:
                problems.append("%s needs %s" % (lib, ", ".join(missing)))
    if problems:
        print("%s: %s" % (c["name"], "; ".join(problems)))
    summary.append("%-24s %-16s %s" % (c["name"], c["version"] or "-", "ok" if not problems else
                                       "FAILED: " + "; ".join(problems)[:70]))
print("\n".join(summary))  # last, so the report's excerpt (the output's end) keeps it
sys.exit(1 if any(not line.endswith(" ok") for line in summary) else 0)
