"""Output for people and for pipes: whole tags at 80 columns, marks said in words where bold and strike
do not reach, help on every option with its default, a version, `runner plan` saying what its checks
ran over, `runner resolve` summing up what it could not check per index."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from types import SimpleNamespace

from runner.cli.parser import build_parser
from tests.conftest import ROOT


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_matrix_at_80_columns_shows_every_tag_whole_and_marks_in_words():
    out = run("matrix", "--include-deprecated", COLUMNS="80")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    tags = json.loads(run("matrix", "--include-deprecated", "--format", "json").stdout)
    words = {w for line in lines for w in line.split()}
    assert len(tags) == 246 and not [t["tag"] for t in tags if t["tag"] not in words]
    # stdout is a pipe here: no bold or strike reaches it, so the status is said in words
    deprecated = [t for t in tags if t["status"] == "deprecated"]
    assert deprecated and out.stdout.count("(deprecated)") == len(deprecated)
    assert out.stdout.count("(polished)") == sum(t["status"] == "polished" for t in tags)
    assert "struck" not in out.stdout


def _options():
    ap = build_parser()
    commands = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, parser in [("runner", ap), *commands.items()]:
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                yield name, action


def test_every_option_and_argument_has_help():
    missing = [f"{name} {action.option_strings or action.dest}" for name, action in _options() if not action.help]
    assert not missing, missing


def test_defaults_are_shown_in_help():
    from runner.cli.parser import Help

    shown = [(n, a) for n, a in _options() if a.option_strings and a.default not in (None, False, "", [])
             and a.default is not argparse.SUPPRESS]
    assert len(shown) > 20
    help_of = Help("runner")._get_help_string
    assert not [f"{n} {a.option_strings}" for n, a in shown if "default" not in help_of(a)]
    assert "(default: 2)" in " ".join(run("build", "--help").stdout.split())  # --concurrency, as printed
    job = " ".join(run("job", "--help").stdout.split())
    assert "(default: REGISTRY_PASSWORD)" in job and "--insecure plain-HTTP registry" in job


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("runner ") and out.stdout.split()[1][0].isdigit()


def test_plan_ends_saying_what_its_checks_ran_over_and_found():
    out = run("plan", "--backend", "corex")
    assert out.returncode == 0, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("runner: checks ran: static checks over ") and "; patches: " in last
    assert "shellcheck over " in last and " distinct scripts: 0 findings" in last


def _report(tag: str, status: str, message: str = "", step: int = 1) -> SimpleNamespace:
    return SimpleNamespace(tag=tag, platform="linux/amd64", step=step, title="t", status=status, message=message,
                           versions={}, notes=[], cached=False)


def test_resolve_sums_unchecked_steps_per_index_instead_of_listing_them():
    from rich.console import Console

    from runner.ui.resolve import UNREACHABLE, not_checked_summary, resolve_table

    torch = "https://download.pytorch.org/whl/cu128 (no route)"
    vendor = "https://vendor.example/simple (DNS: no such host)"
    reports = [_report("a1-x0.1", "not-checked", UNREACHABLE + torch, 1),
               _report("a1-x0.1", "not-checked", UNREACHABLE + f"{torch}, {vendor}", 2),
               _report("b1-x0.1", "not-checked", UNREACHABLE + torch, 1),
               _report("b1-x0.1", "not-checked", "uv did not answer within 600 s", 2),
               _report("c1-x0.1", "resolved"), _report("c1-x0.1", "conflict", "torch==2.9 and torch==2.8", 2)]
    assert not_checked_summary(reports) == [
        "not checked here: 3 install steps of 2 images behind https://download.pytorch.org/whl/cu128 (no route)",
        "not checked here: 1 install step of 1 image behind https://vendor.example/simple (DNS: no such host)",
        "not checked here: 1 install step of 1 image uv did not answer within 600 s"]
    console = Console(width=80, record=True)
    console.print(resolve_table(reports))
    text = console.export_text()
    assert "c1-x0.1" in text and "a1-x0.1" not in text and "b1-x0.1" not in text  # the conflict only
    console = Console(width=200, record=True)
    console.print(resolve_table(reports, verbose=True))
    assert "a1-x0.1" in console.export_text()


def test_the_rehearsal_table_keeps_the_tag_whole_at_80_columns_and_counts_smoke_checks():
    from rich.console import Console

    from runner.ui.tables import rehearsal_table

    tag = "cann8.5-910b-sglang0.5.8.post1"
    images = [{"tag": tag, "platform": "linux/arm64", "verdict": "smoke failed", "seconds": 361.4,
               "steps": [{"status": "ran"}] * 5 + [{"status": "substituted"}] * 2,
               "smoke": [{"passed": True}] * 12 + [{"passed": False}]},
              {"tag": "cuda12.8-voxbox0.0.21", "platform": "linux/amd64", "verdict": "failed step", "seconds": 9.0,
               "steps": [{"status": "failed"}], "smoke": []}]
    console = Console(width=80, record=True)
    console.print(rehearsal_table({"images": images}))
    text = console.export_text()
    assert tag in text and "12/13" in text and "none" in text and "5/2/0/0/0" in text
    assert max(len(line) for line in text.splitlines()) <= 80
