"""One behaviour for both faces: every command the CLI and the Dagger module both have takes the same
options under the same names (`--backend-version` on both: Dagger shows `backend_version` as that)
with the same defaults, but for the differences listed below, each with the reason it is by nature.
A Dagger command is a chain: its filters are `select`'s, its registry `with-registry`'s, and the rest
the chained function's (`select ... with-registry ... merge`). The Dagger side is read offline, as
`dagger functions` would show it (tests/dagger_query.py)."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.dagger_query import typedefs  # sets DAGGER_MAIN_OBJECT before dagger loads

from runner.cli.parser import build_parser  # noqa: E402

# (command, option) -> why only one face has it. "*" stands for every command.
ONE_FACE_ONLY = {
    # the project: the CLI reads a matrix file; the module's source directory holds matrix.yaml and pack/
    ("*", "matrix"): "the module's `source` (a directory) is the project",
    # secrets: the CLI reads them from the environment, Dagger takes them as Secret arguments
    ("*", "password_env"): "CLI: a variable's name; Dagger: `password`, a Secret",
    ("*", "password"): "Dagger: a Secret; CLI: --password-env names the variable",
    ("mirror", "mirror_password_env"): "CLI: a variable's name; Dagger: `mirror_password`, a Secret",
    ("mirror", "mirror_password"): "Dagger: a Secret; CLI: --mirror-password-env",
    # output: the CLI prints for people or JSON; a Dagger function returns one value, chained calls the rest
    ("plan", "format"): "Dagger's plan returns JSON",
    ("resolve", "format"): "Dagger's resolve returns JSON",
    ("resolve", "verbose"): "a table option; Dagger's JSON has every step",
    ("resolve", "jobs"): "uv processes on this machine; the engine's function runs its own",
    ("resolve", "per_step"): "a local shortcut; the module always checks whole images too",
    ("build", "report"): "Dagger: chain `select ... images report`",
    ("publish", "report"): "Dagger: chain `select ... images report`",
    ("smoke", "report"): "Dagger: chain `smoke ... report`",
    ("rehearse", "report"): "Dagger's rehearse returns the report (--format json: all of it)",
    ("rehearse", "checkout"): "Dagger: runner's own code, installed in the rehearsal's container; the CLI is that install",
    # the local Docker engine's own settings: the Dagger engine caches and labels by itself
    ("*", "engine"): "CLI only: which local engine (Dagger is the engine of `dagger call`)",
    ("*", "keep_engine"): "the CLI's own dockerd when none answers; `dagger call` needs a Dagger engine",
    ("*", "no_smoke_cache"): "the CLI's smoke memory; Dagger caches the checks' execs itself",
    ("*", "reproducible"): "Docker images are rewritten to be reproducible; Dagger's are by construction",
    ("*", "build_cache"): "a CI job's build cache; Dagger's `job` takes it, its builds use the engine's cache",
    ("*", "source_url"): "Dagger: a constructor argument (`dagger call --source-url ...`)",
    ("*", "revision"): "Dagger: a constructor argument (`dagger call --revision ...`)",
    ("smoke", "registry"): "Dagger logs in for private images; the CLI uses the daemon's own login",
    ("smoke", "username"): "Dagger logs in for private images; the CLI uses the daemon's own login",
    # signing: a key file or ambient keyless on the CLI; Secrets and token URLs in Dagger
    ("*", "sign_key"): "Dagger: `signing_key`, a Secret",
    ("*", "keyless"): "Dagger: `sigstore_token` or `oidc_request_token`, Secrets",
    ("*", "signing_key"): "CLI: --sign-key FILE or $RUNNER_SIGNING_KEY",
    ("*", "sigstore_token"): "CLI: --keyless reads $SIGSTORE_ID_TOKEN",
    ("*", "oidc_request_token"): "CLI: --keyless reads the CI's ambient token",
    ("*", "oidc_request_url"): "CLI: --keyless reads the CI's ambient token",
    # CI jobs: the CLI's job runs on a local daemon, Dagger's in the engine
    ("job", "insecure"): "a plain-HTTP local registry, for the CLI's tests",
    ("job", "gpu"): "the CLI's device check on a host with the accelerator",
    ("promote", "reason"): "Dagger: `digests --reason` records why a final tag changed",
    # one set of registry arguments serves every CLI step; publish and merge leave the catalog as it is
    ("publish", "catalog"): "accepted with the other registry arguments; nothing in the catalog changes",
    ("merge", "catalog"): "accepted with the other registry arguments; nothing in the catalog changes",
    ("release-report", "catalog"): "accepted with the other registry arguments; a report reads no catalog",
    # one `select` serves every chain: discard takes deprecated tags whatever it says, as the CLI's does
    ("discard", "include_deprecated"): "Dagger: select's, which discard overrides (deprecated tags go too)",
    # verify and mirror: the CLI checks a selection's tags and mirrors; Dagger's verify takes references
    ("verify", "*"): "Dagger's verify takes image references only; `mirror --check` checks mirrors",
    ("mirror", "check"): "CLI: `verify --mirror`",
    ("mirror", "platform"): "Dagger: select's, which mirror refuses with the reason (mirrors copy whole tags)",
}
# Same name, different default on purpose
DEFAULTS_DIFFER = {
    ("build", "concurrency"): "2 on a local daemon sharing the machine; the Dagger engine schedules 4",
    ("publish", "concurrency"): "2 on a local daemon sharing the machine; the Dagger engine schedules 4",
}
# CLI command -> the Dagger functions whose arguments make it: the filters are `select`'s, the
# registry `with-registry`'s (its `address` is the CLI's `--registry`)
SELECT, REGISTRY = [("Runner", "select")], [("Runner", "select"), ("Selected", "with_registry")]
FUNCTIONS = {**{name: [*SELECT, ("Selected", name)] for name in ("matrix", "plan", "resolve", "build", "rehearse")},
             **{name: [*REGISTRY, ("Released", name)] for name in ("publish", "merge", "promote", "discard", "mirror")},
             "release-report": [*REGISTRY, ("Released", "report")]}
RENAMED = {("with_registry", "address"): "registry"}


def _allowed(command: str, option: str) -> bool:
    return any(k in ONE_FACE_ONLY for k in ((command, option), ("*", option), (command, "*")))


@pytest.fixture(scope="module")
def faces():
    import anyio

    objects = anyio.run(typedefs)["objects"]
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    pairs = {}
    for name, parser in commands.items():
        fns = FUNCTIONS.get(name, [("Runner", name)])
        if all(f in objects[o]["functions"] for o, f in fns):
            dagger_args = {RENAMED.get((f, k), k): v
                           for o, f in fns for k, v in objects[o]["functions"][f]["args"].items()}
            cli = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
            pairs[name] = (cli, dagger_args)
    return pairs


def test_the_commands_both_faces_have_are_compared(faces):
    assert {"matrix", "plan", "resolve", "dockerfile", "build", "smoke", "job", "publish", "merge", "promote",
            "discard", "prune", "verify", "mirror", "release-report", "rehearse"} <= set(faces)
    # the newer filters are compared too: one `select` declares them all, for every chain
    assert {"backend_version_prefix", "service_version_prefix", "select", "skip"} <= set(faces["merge"][1])


def test_same_options_by_the_same_names(faces):
    differ = []
    for command, (cli, dagger_args) in sorted(faces.items()):
        positional = {"tag", "key", "images"}  # CLI positionals are Dagger arguments of the same name
        for name in sorted(set(cli) ^ (set(dagger_args) - positional)):
            if not _allowed(command, name):
                differ.append(f"{command} {'--' + name.replace('_', '-')}: only the "
                              f"{'CLI' if name in cli else 'Dagger function'} has it")
        for name in set(cli) & set(dagger_args):
            assert f"--{name.replace('_', '-')}" in cli[name].option_strings, (command, name)
    assert not differ, "\n".join(differ)


def _plain(value):
    """A default as both faces mean it: nothing is None, enum members compare as their lower-case values."""
    return None if value in (None, "", []) else value.lower() if isinstance(value, str) else value


def test_same_defaults(faces):
    differ = []
    for command, (cli, dagger_args) in sorted(faces.items()):
        for name in sorted(set(cli) & set(dagger_args)):
            given = dagger_args[name]["default"]
            if given is None or (command, name) in DEFAULTS_DIFFER:
                continue  # a required Dagger argument, or a difference listed with its reason
            theirs, ours = _plain(json.loads(given)), _plain(cli[name].default)
            if theirs != ours:
                differ.append(f"{command} --{name.replace('_', '-')}: CLI {ours!r}, Dagger {theirs!r}")
    assert not differ, "\n".join(differ)


def test_the_allow_list_holds_no_stale_entry(faces):
    """Every allowed difference is still a difference (a fixed one must leave the list)."""
    for (command, option), why in ONE_FACE_ONLY.items():
        if "*" in (command, option):
            continue
        if command in faces:
            cli, dagger_args = faces[command]
            assert (option in cli) != (option in dagger_args) or option == "platform", (command, option, why)


def test_deprecated_targets_are_left_out_by_default_on_both_faces(faces, project):
    from runner.cli.inspect import selected_targets

    for command in ("matrix", "plan", "resolve", "build", "publish", "merge", "promote", "mirror"):
        cli, dagger_args = faces[command]
        assert cli["include_deprecated"].default is False and dagger_args["include_deprecated"]["default"] == "false"
    args = build_parser().parse_args(["matrix"])
    _, targets = selected_targets(args)
    assert targets and not any(t.deprecated for t in targets) and any(t.deprecated for t in project.targets)
    _, every = selected_targets(build_parser().parse_args(["matrix", "--include-deprecated"]))
    assert len(every) == len(project.targets)
