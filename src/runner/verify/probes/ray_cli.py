# Probe: Ray's own `ray start` command line. Runs inside the image under test; runner puts
# `INPUT = {...}` above this text (the seed-002 head and worker lines). Each line is parsed and
# validated by Ray's click command without starting anything; an unknown option, a prefix of
# another option or a value Ray rejects fails the case with Ray's own message.
import sys

import click
from ray.scripts.scripts import start

failed = 0
for case in INPUT["cases"]:  # noqa: F821 - INPUT is put above this text by runner
    argv = case["argv"][2:] if case["argv"][:2] == ["ray", "start"] else case["argv"]
    known = {opt for param in start.params for opt in param.opts + param.secondary_opts}
    unknown = [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]
    try:
        if unknown:
            raise click.UsageError("not an option of `ray start`: " + ", ".join(unknown))
        start.make_context("ray start", list(argv))
        print("%-8s ok" % case["name"])
    except click.ClickException as e:
        failed += 1
        print("%-8s FAILED: %s" % (case["name"], e.format_message()))
sys.exit(1 if failed else 0)
