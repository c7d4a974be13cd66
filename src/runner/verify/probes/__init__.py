"""Probes: small Python programs a smoke check runs inside the image under test (`probe: NAME` in a
smoke spec), each fed an INPUT that runner computes for the target: what GPUStack starts from the
image (pack/_consumer), the paths its environment names, the pre-releases its recipe allows.

A probe is this folder's NAME.py; it is never imported here, only read and sent into the image as
`python3 - <<HEREDOC` with `INPUT = {...}` put above its text. It must run on the image's python
(3.8 and later) with nothing but the standard library and the software it probes."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from runner.compose.stages import Stage
from runner.model.targets import Target

FOLDER = Path(__file__).parent
PATH_LIKE = ("*_HOME", "*_PREFIX", "*_PATH", "*_ROOT", "*_DIR")  # environment that names places
STANDARD_PATH = ("/usr/local/bin", "/usr/bin", "/bin")  # every base image's PATH has these
_END = "RUNNER_PROBE_END"


@lru_cache(maxsize=32)
def source(name: str) -> str:
    path = FOLDER / f"{name}.py"
    if not path.is_file():
        raise LookupError(name)
    return path.read_text()


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.py") if p.stem != "__init__")


def script(name: str, data: dict, python: str = "python3") -> str:
    """The shell text that runs probe NAME on `data` in the image."""
    return f"{python} - <<'{_END}'\nINPUT = {json.dumps(data, sort_keys=True)!r}\nimport json as _json\nINPUT = _json.loads(INPUT)\n{source(name)}{_END}\n"


def declared(leaf: Stage) -> list:
    """The components the leaf's stages declare (what the image ships), copy sources excluded: a
    build stage's wheel counts where it is installed."""
    from runner.compose.components import effective

    return effective(c for stage in leaf.chain() for c in stage.components)


def components(leaf: Stage) -> frozenset[str]:
    """Names of the components the image ships."""
    return frozenset(c.name for c in declared(leaf))


def consumer_hooks() -> dict[str, str]:
    """The site hooks the consumer_lines probe writes into the image (consumer_hooks/*.py by name):
    without them a line the service accepts would go on to serve."""
    return {p.name: p.read_text() for p in sorted((FOLDER / "consumer_hooks").glob("*.py"))}


def _consumer_lines(t: Target, leaf: Stage, given: dict, pack: Path) -> dict:
    from runner.verify.consumer import probe_input

    if given.get("mode") == "version":
        return {}
    return {**probe_input(pack, t, leaf.entrypoint(), int(given.get("timeout", 600))), "hooks": consumer_hooks()}


def _env_paths(t: Target, leaf: Stage, given: dict) -> dict:
    env = leaf.env()
    places = {k: v for k, v in env.items() if any(fnmatch.fnmatchcase(k, p) for p in PATH_LIKE)
              and v.startswith("/") and "$" not in v}
    return {"places": places, "path_keeps": list(given.get("path_keeps", STANDARD_PATH))}


def _prereleases(t: Target, leaf: Stage, given: dict) -> dict:
    from runner.compose.requirements import allowed_prereleases

    return {"allowed": sorted(allowed_prereleases(leaf) | set(given.get("allowed", ())))}


def _pip_check(t: Target, leaf: Stage, given: dict) -> dict:
    from runner.compose.requirements import superseded

    return {"superseded": {dist: sorted(reqs) for dist, reqs in superseded(leaf).items()}}


def _components(t: Target, leaf: Stage, given: dict) -> dict:
    from runner.compose.components import DRIVER_LIBRARIES

    return {"components": [c.check() for c in declared(leaf)], "driver_libraries": list(DRIVER_LIBRARIES)}


INPUTS: dict[str, Callable[..., dict]] = {
    "consumer_lines": _consumer_lines, "env_paths": _env_paths, "prereleases": _prereleases,
    "components": _components, "pip_check": _pip_check,
}


def versions_for(name: str, leaf: Stage) -> tuple[tuple[str, str], ...]:
    """What probe NAME's reported versions must satisfy (runner.verify.smoke compares them)."""
    if name != "components":
        return ()
    return tuple((c.dist, c.specifier()) for c in declared(leaf) if c.specifier())


def input_for(name: str, t: Target, leaf: Stage, given: dict, pack: Path | None = None) -> dict:
    """What probe NAME is told about the target (plus what the spec's `with` gives); builders that read
    the project's records (pack/_consumer) take its pack folder."""
    build = INPUTS.get(name)
    if build is None:
        return dict(given)
    return {**given, **(build(t, leaf, given, pack) if name == "consumer_lines" else build(t, leaf, given))}
