"""The release flow both faces call (runner.flow): a CI job carries its selection into the flow, so it
builds only what the matrix it came from emitted; credentials are read once, from the variable named."""

from __future__ import annotations

import anyio
import pytest

from runner.flow.credentials import Credentials
from runner.flow.release import BuildOptions, Release
from runner.model.errors import UserError
from runner.model.targets import Selection


def _first_job(project, selection: Selection):
    return Release(project, selection, selection.apply(project.targets)).jobs.jobs[0]


def test_a_job_emitted_by_one_selection_is_not_in_another(project):
    cuda = Selection(backend="cuda", service="vllm", include_deprecated=False)
    rocm = Selection(backend="rocm", service="vllm", include_deprecated=False)
    key = _first_job(project, cuda).key
    options = BuildOptions(build_cache="127.0.0.1:5000/ci/cache", dry_run=True)
    with pytest.raises(UserError, match="no such job in the plan"):  # before any engine or registry is asked
        anyio.run(Release(project, rocm).job, key[:16], options)


def test_a_job_plans_in_its_own_selection_not_the_whole_matrix(project, monkeypatch):
    from runner.flow import local as flow

    seen = {}

    def find_job(project, selection, key):
        seen["selection"] = selection
        raise UserError("stop here")

    monkeypatch.setattr(flow, "find_job", find_job)
    selection = Selection.from_json('{"backend": "cuda", "service": "sglang", "include_deprecated": false}')
    with pytest.raises(UserError, match="stop here"):
        anyio.run(Release(project, selection).job, "0123456789abcdef", BuildOptions(build_cache="h/n/r"))
    assert seen["selection"] == selection


def test_credentials_are_read_once_from_the_variable_named_and_leave_the_environment(monkeypatch):
    monkeypatch.setenv("MY_REGISTRY_TOKEN", "s3cret-value")
    first = Credentials.from_env("ci", "MY_REGISTRY_TOKEN")
    import os

    assert "MY_REGISTRY_TOKEN" not in os.environ  # no child process inherits it
    assert first.password == "s3cret-value" and Credentials.from_env("ci", "MY_REGISTRY_TOKEN") == first
    assert "s3cret-value" not in repr(first)
    with pytest.raises(UserError, match="the environment variable NOT_SET_ANYWHERE"):
        Credentials.from_env("ci", "NOT_SET_ANYWHERE").required()
