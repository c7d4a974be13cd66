"""`dagger functions` shows each function's first docstring line only: every summary must be a whole
sentence on its own, not a clause cut at a line break, and cite nothing a user does not have. The
functions are read as the SDK registers them (tests/dagger_query.py), chained objects included."""

from __future__ import annotations

import re

import anyio
import pytest

from tests.dagger_query import typedefs  # sets DAGGER_MAIN_OBJECT before dagger loads

DANGLING = re.compile(r"(,|;|:|\b(and|or|the|a|an|of|to|with|for|from|in|by|when|than|that|each))$")


def summary_problems(description: str) -> list[str]:
    """What is wrong with a description's first line as one-line help (empty: nothing)."""
    first, _, rest = description.partition("\n")
    problems = []
    if not first.strip():
        problems.append("no summary")
    elif rest and rest.strip() and not rest.startswith("\n"):
        problems.append("the first sentence runs on to the next line, so the one-line help is cut mid-clause")
    if first and not first.rstrip().endswith((".", "?", "!")):
        problems.append("the summary does not end a sentence")
    if DANGLING.search(first.rstrip(".")):
        problems.append("the summary ends mid-clause")
    if first[:1].islower():
        problems.append("the summary does not start a sentence")
    if re.search(r"\bseeds?\s*\d", description, re.IGNORECASE):
        problems.append("the help cites a project document users do not have")
    return problems


@pytest.fixture(scope="module")
def objects():
    return anyio.run(typedefs)["objects"]


def test_every_registered_function_has_a_whole_sentence_as_its_summary(objects):
    bad = {f"{o}.{name}": summary_problems(fn["description"])
           for o, obj in objects.items() for name, fn in obj["functions"].items()}
    bad |= {o: summary_problems(obj["description"]) for o, obj in objects.items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_chained_objects_are_registered_and_reachable(objects):
    runner = objects["Runner"]["functions"]
    assert runner["select"]["returns"] == "Selected"
    assert objects["Selected"]["functions"]["with_registry"]["returns"] == "Released"
    assert {"build", "images", "plan", "matrix", "resolve", "drive"} <= set(objects["Selected"]["functions"])
    assert {"publish", "merge", "promote", "discard", "report", "mirror", "digests"} <= set(
        objects["Released"]["functions"])
    # the filters are declared on select only: no other function of any object takes one of them again
    filters = {"backend", "service", "backend_version", "variant", "service_version", "include_deprecated",
               "backend_version_prefix", "service_version_prefix", "select", "skip"}
    assert filters <= set(runner["select"]["args"])
    for o, obj in objects.items():
        for name, fn in obj["functions"].items():
            if (o, name) != ("Runner", "select"):
                assert not filters & set(fn["args"]), (o, name)
    # and the registry once, on with-registry: nothing chained on it takes a registry again
    assert {"address", "username", "password"} <= set(objects["Selected"]["functions"]["with_registry"]["args"])
    for name, fn in objects["Released"]["functions"].items():
        assert not {"registry", "address", "username", "password"} & set(fn["args"]), name


@pytest.mark.parametrize("text, problem", [
    ("Push single-arch images, then each tag's multi-arch -dev index from their digests when every\n"
     "platform of the matrix target passed.", "cut mid-clause"),
    ("One target's stages rendered as a multi-stage Dockerfile (seed 000's convention).", "document"),
    ("Build every selected target and", "ends mid-clause"),
    ("catalog.digests.json with the final tags pinned.", "start a sentence"),
])
def test_a_cut_or_citing_summary_is_caught(text: str, problem: str):
    assert any(problem in p for p in summary_problems(text)), summary_problems(text)
