"""A release run's report where CI users look: Markdown for a GitHub step summary (and a GitLab
artifact), JUnit XML for GitLab's test report (one test case per target and platform); and the CI
plan's figures with the release's modelled time, as `runner plan --ci` prints them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from runner.release.run_report import Row

_MARK = {"passed": "passed", "failed": "FAILED", "not tested": "NOT TESTED"}


def markdown(rows: Sequence[Row], run: str) -> str:
    """A table of targets x platforms: result, digest, size, time, -dev index, promoted, and why not."""
    passed = sum(r.result == "passed" for r in rows)
    indexed = len({r.tag for r in rows if r.dev})
    lines = [f"## Release run {run}", "",
             f"{passed} of {len(rows)} images passed; {indexed} of {len({r.tag for r in rows})} tags have a -dev "
             f"index from this run, {len({r.tag for r in rows if r.promoted})} promoted.", "",
             "| target | platform | result | digest | size | time | -dev index | promoted | why not |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.tag} | {r.platform} | {_MARK[r.result]} | {_short(r.digest)} | {_size(r.size)} | "
                     f"{r.seconds:.0f} s | {_short(r.dev)} | {'yes' if r.promoted else 'no'} | {_cell(r.why)} |")
    return "\n".join(lines) + "\n"


def junit(rows: Sequence[Row], run: str) -> str:
    """JUnit XML: a test case per target and platform, failed or not tested ones with the reason."""
    suite = ET.Element("testsuite", name=f"release run {run}", tests=str(len(rows)),
                       failures=str(sum(r.result != "passed" for r in rows)))
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=r.tag, name=r.platform, time=f"{r.seconds:.1f}")
        if r.result != "passed":
            ET.SubElement(case, "failure", message=f"{r.result}: {r.why}"[:1000]).text = r.why
        elif not r.dev:
            ET.SubElement(case, "system-out").text = r.why
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True) + "\n"


def render(rows: Sequence[Row], run: str, form: str) -> str:
    """The report in one of its forms: markdown, junit or json."""
    if form == "markdown":
        return markdown(rows, run)
    if form == "junit":
        return junit(rows, run)
    if form == "json":
        import json

        return json.dumps([r.as_dict() for r in rows], indent=1)
    from runner.model.errors import UserError

    raise UserError("unknown report format", value=form, allowed=("markdown", "junit", "json"))


def jobs_markdown(jobs: Sequence[dict], run: str) -> str:
    """The driver's jobs (runner.release.dag_driver.summary) as a Markdown table, failures first."""
    order = {"failed": 0, "not run": 1, "left for the next driver run": 2, "passed": 3}
    lines = [f"## Jobs of release run {run}", "", "| job | builds | platform | state | detail |", "|---|---|---|---|---|"]
    for j in sorted(jobs, key=lambda j: order.get(j["state"], 9)):
        job = f"[{j['key']}]({j['url']})" if j["url"] else j["key"]
        lines.append(f"| {job} | {j['tag'] or j['stage']} | {j['platform']} | {j['state']} | {_cell(j['detail'])} |")
    return "\n".join(lines) + "\n"


def ci_plan_lines(figures: dict, schedule: dict) -> list[str]:
    """The CI plan in a few lines: jobs, stage builds, compiles, and the modelled release time."""
    return [
        f"{figures['jobs']} jobs ({', '.join(map(str, figures['jobs_per_wave']))} per wave of dependencies)",
        f"stage builds over the release: {figures['stage_builds']} for {figures['distinct_stages']} distinct stages "
        f"(each job's build-cache lookup; {figures['cross_base_edges']} cross-base edges among them)",
        f"vLLM compiles: {figures['vllm_compiles']} for {figures['distinct_vllm_compiles']} distinct vLLM builds, "
        f"at most {figures['max_vllm_compiles_per_job']} per job",
        f"modelled release time on {schedule['runners']} runners: {schedule['dag_hours']:.1f} h as a DAG (jobs start "
        f"when their inputs are published), {schedule['waves_hours']:.1f} h in waves; critical path "
        f"{schedule['critical_path_hours']:.1f} h",
        "assumed minutes: " + ", ".join(f"{k} {v}" for k, v in schedule["assumed_minutes"].items()),
    ]


def _short(digest: str) -> str:
    return f"`{digest[7:19]}`" if digest.startswith("sha256:") else ""


def _size(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]
