"""`dagger call select ... rehearse`, offline: the selection reaches `runner rehearse` as the CLI would
take it, the container it runs in holds what setup.sh installs for a rehearsal, and the one exec the
function sends runs the CLI with root capabilities (its private dockerd), never from the engine's cache.
bench/dagger_rehearsal.py runs the container's own lines on a local daemon (figures in the README)."""

from __future__ import annotations

import re

import pytest

from tests.dagger_query import calls  # sets DAGGER_MAIN_OBJECT before dagger loads

from dagger import dag  # noqa: E402

from runner.cli.parser import build_parser  # noqa: E402
from runner.dagger.rehearse import REHEARSAL_PACKAGES, rehearse_argv  # noqa: E402
from runner.model.errors import Failed  # noqa: E402
from runner.model.selection import Selection  # noqa: E402
from runner.ui.selection import selection_json, selection_of  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SELECTIONS = (
    Selection(include_deprecated=False),
    Selection(backend="cann", variant="910b", service="vllm", platform="linux/arm64", include_deprecated=False),
    Selection(backend_version="12", service_version="0.14", select="cuda12.*-vllm0.14* *voxbox*", skip="*-dev",
              include_deprecated=True),
    Selection(backend_version_prefix="12.8", service_version_prefix="0.5", include_deprecated=False),
)


@pytest.mark.parametrize("selection", SELECTIONS, ids=range(len(SELECTIONS)))
def test_the_selection_reaches_the_cli_as_the_same_selection(selection):
    argv = rehearse_argv(selection, everything=False, keep=True, form="json", cover=bool(selection.service))
    a = build_parser().parse_args(argv)
    again = selection_of(a.backend, a.backend_version, a.variant, a.service, a.service_version, a.platform,
                         a.include_deprecated, backend_version_prefix=a.backend_version_prefix,
                         service_version_prefix=a.service_version_prefix, select=a.select, skip=a.skip)
    assert again == selection and a.keep and a.format == "json" and not a.all
    assert a.cover == bool(selection.service)


def test_the_container_installs_what_setup_sh_installs_for_a_rehearsal():
    listed = re.search(r"^packages=\(([^)]*)\)", (ROOT / "setup.sh").read_text(), re.M | re.S).group(1).split()
    system = set(REHEARSAL_PACKAGES) - {"ca-certificates", "python3", "python3-venv"}  # Debian's own python
    assert system and system <= set(listed), system - set(listed)


class Sent(Exception):
    """Raised instead of sending a query: carries what would have been sent."""


@pytest.fixture
def capture(monkeypatch):
    from dagger.client._core import Context

    async def execute(self, return_type=None):
        raise Sent(list(self.selections))

    monkeypatch.setattr(Context, "execute", execute)


async def test_the_rehearsal_runs_the_cli_with_root_capabilities_in_its_own_container(capture):
    from runner.dagger.chain import Selected

    selected = Selected(source=dag.directory(), selection=selection_json(SELECTIONS[1]))
    with pytest.raises(Sent) as sent:
        await selected.rehearse(dag.directory(), all=True)
    chain = [(s.name, dict(s.args)) for s in sent.value.args[0]]
    execs = [args for name, args in chain if name == "withExec"]
    assert [name for name, _ in chain][-1] == "exitCode"
    assert next(args for name, args in chain if name == "from")["address"] == "debian:bookworm"
    install, pip, cli = execs
    assert all(p in install["args"][-1] for p in REHEARSAL_PACKAGES) and "pip install" in pip["args"][-1]
    assert not install.get("insecureRootCapabilities") and not pip.get("insecureRootCapabilities")
    assert cli["insecureRootCapabilities"] is True and cli["expect"] == "ANY"
    assert cli["args"] == ["/opt/runner/bin/runner", "rehearse", "--format", "table", "--backend", "cann",
                           "--variant", "910b", "--service", "vllm", "--platform", "linux/arm64", "--all"]
    env = {args["name"]: args["value"] for name, args in chain if name == "withEnvVariable"}
    assert env["RUNNER_MATRIX"] == "/runner/matrix.yaml" and "RUNNER_REHEARSAL_ASKED" in env
    caches = [args["path"] for name, args in chain if name == "withMountedCache"]
    assert env["RUNNER_CACHE_DIR"] in caches  # the Debian base, the sources and the dockerd's data outlive a call
    # two calls are two rehearsals: the engine never answers one from its cache
    with pytest.raises(Sent) as again:
        await selected.rehearse(dag.directory(), all=True)
    stamp = [dict(s.args)["value"] for s in again.value.args[0]
             if s.name == "withEnvVariable" and dict(s.args)["name"] == "RUNNER_REHEARSAL_ASKED"]
    assert stamp != [env["RUNNER_REHEARSAL_ASKED"]]


async def test_an_unknown_format_is_refused_before_anything_is_sent(capture):
    from runner.dagger.chain import Selected

    with pytest.raises(Failed, match="'yaml' is not one of: table, json"):
        await Selected(source=dag.directory(), selection=selection_json(SELECTIONS[0])).rehearse(dag.directory(),
                                                                                                 format="yaml")
