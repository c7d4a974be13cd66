"""`dagger call select ... rehearse`: `runner rehearse` inside the engine. The rehearsal builds on a
Docker daemon with the source mirror on its loopback (builds use the host network), so it runs where
both can live together: one container of its own, Debian with docker.io, in which runner starts its
private dockerd (root capabilities) and rehearses exactly as the CLI does. One flow: the container runs
the CLI, and this face only translates the selection into its arguments."""

from __future__ import annotations

import time
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, dag, function

from runner.model.errors import Failed
from runner.model.selection import FILTERS, Selection
from runner.ui.selection import selection_from_json

# The distribution the stand-in bases are made of; its docker.io is the 20.10 the project builds on.
REHEARSAL_IMAGE = "debian:bookworm"
# What a rehearsal needs of setup.sh's system packages (tests/test_dagger_rehearse.py holds them to that
# list): the daemon, debootstrap for the stand-in bases, git and patch for the source mirror and the
# patch check; and a python to install runner in.
REHEARSAL_PACKAGES = ("docker.io", "debootstrap", "git", "patch", "ca-certificates", "python3", "python3-venv")
# the project cache inside the container: a cache volume, so the Debian root file system, the sources and
# the private dockerd's data (its build cache) outlive one call
CACHE = "/var/cache/runner"
PROJECT = "/runner"
# the container's lines, as they run (bench/dagger_rehearsal.py runs them on the local daemon)
INSTALL_SYSTEM = ("rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                  "apt-get install -y -qq --no-install-recommends " + " ".join(REHEARSAL_PACKAGES))
INSTALL_RUNNER = f"python3 -m venv /opt/runner && /opt/runner/bin/pip install -q {PROJECT}"
RUNNER = "/opt/runner/bin/runner"
ENV = {"RUNNER_CACHE_DIR": CACHE, "RUNNER_MATRIX": f"{PROJECT}/matrix.yaml"}

RunnerCheckout = Annotated[
    dagger.Directory,
    Doc("runner's own checkout, installed in the rehearsal's container (default: this one)"),
    DefaultPath("/"),
    Ignore(["*", "!pyproject.toml", "!src/runner", "!matrix.yaml", "!pack", "**/__pycache__"]),
]


def rehearse_argv(selection: Selection, everything: bool, keep: bool, form: str, cover: bool = False) -> list[str]:
    """The `runner rehearse` arguments of a selection, by the CLI's own option names."""
    argv = ["rehearse", "--format", form]
    for name in FILTERS:
        if value := getattr(selection, name):
            argv += ["--" + name.replace("_", "-"), value]
    argv += ["--include-deprecated"] * selection.include_deprecated + ["--all"] * everything + ["--keep"] * keep
    return argv + ["--cover"] * cover


def rehearsal_container(project: dagger.Directory) -> dagger.Container:
    """Debian with what a rehearsal needs and runner installed from `project` (its code, matrix and pack/)."""
    ctr = (dag.container().from_(REHEARSAL_IMAGE)
           .with_mounted_cache("/var/cache/apt/archives", dag.cache_volume("runner-rehearsal-apt"))
           .with_exec(["sh", "-c", INSTALL_SYSTEM])
           .with_directory(PROJECT, project)
           .with_workdir(PROJECT)
           .with_exec(["sh", "-c", INSTALL_RUNNER])
           .with_mounted_cache(CACHE, dag.cache_volume("runner-rehearsal")))
    for name, value in ENV.items():
        ctr = ctr.with_env_variable(name, value)
    return ctr


class RehearseFunction:
    """Mixed into the Selected object (it uses its `source` and `selection`)."""

    source: dagger.Directory
    selection: str

    @function(cache="never")
    async def rehearse(
        self,
        checkout: RunnerCheckout,
        all: Annotated[bool, Doc("rehearse the whole selection; without filters and without this: the default "
                                 "target, as `runner rehearse`")] = False,
        keep: Annotated[bool, Doc("keep the images and build cache the rehearsal made (in its cache volume)")] = False,
        format: Annotated[str, Doc("table, or json: the whole report")] = "table",
        cover: Annotated[bool, Doc("only the fewest target-platforms of the selection that together run every "
                                   "distinct recipe script, amd64 first")] = False,
    ) -> str:
        """Build the selected images as the release would, with the declared substitutions, and smoke-test them.

        `runner rehearse` in a container of its own (Debian, docker.io, runner's private dockerd with root
        capabilities); returns its report, and fails with it when an image did not pass."""
        if format not in ("table", "json"):
            raise Failed(f"format {format!r} is not one of: table, json")
        argv = rehearse_argv(selection_from_json(self.selection), all, keep, format, cover)
        run = (rehearsal_container(checkout.with_directory("/", self.source))
               .with_env_variable("RUNNER_REHEARSAL_ASKED", str(time.time()))  # a rehearsal is never an engine cache hit
               .with_exec([RUNNER, *argv], insecure_root_capabilities=True,
                          expect=dagger.ReturnType.ANY))
        code, out, err = await run.exit_code(), await run.stdout(), await run.stderr()
        if code != 0:
            raise Failed(f"runner {' '.join(argv)} exited {code}:\n{out}\n{err[-4000:]}")
        return out
