"""Loading the recipes of pack/<backend>/recipe.py, the one place a backend is described.

A recipe module is a RecipeModule: it defines
    SERVICES: the services it composes (e.g. ("vllm", "sglang"))
    runtime(target, base) -> Stage: what every service of the release shares
    service(target, runtime) -> Stage: the service stage (it may add build stages of its own)
and optionally base(target, platform) -> Stage when the base is not simply the matrix's image, and
LEFT_OUT, what its images leave out on purpose. A type checker checks a module against the protocol
where it is assigned to one (`recipe: RecipeModule = pack_module`); loading checks it at run time.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol, runtime_checkable

from runner.model.errors import UserError, Where
from runner.compose.stages import Stage, base_stage
from runner.model.targets import Target


@runtime_checkable
class RecipeModule(Protocol):
    """What the plan calls in a pack/<backend>/recipe.py module (base and LEFT_OUT are optional)."""

    @property
    def SERVICES(self) -> Sequence[str]:
        """Read-only, so that a recipe's tuple of names satisfies it (a writable member must match exactly)."""

    def runtime(self, t: Target, base: Stage, /) -> Stage: ...

    def service(self, t: Target, runtime: Stage, /) -> Stage: ...


@dataclass(frozen=True)
class Recipe:
    """One backend's recipe module, checked for the functions the plan calls."""

    backend: str
    path: Path
    services: frozenset[str]
    module: RecipeModule

    def base(self, t: Target, platform: str) -> Stage:
        custom: Callable | None = getattr(self.module, "base", None)
        return custom(t, platform) if custom else base_stage(t.base_image, platform)

    def runtime(self, t: Target, base: Stage) -> Stage:
        return self.module.runtime(t, base)

    def service(self, t: Target, runtime: Stage) -> Stage:
        return self.module.service(t, runtime)

    def left_out(self, service: str) -> tuple:
        """What the recipe leaves out of a service's images on purpose (its LEFT_OUT), with reasons."""
        return tuple(x for x in getattr(self.module, "LEFT_OUT", ()) if not x.services or service in x.services)


def load_recipes(pack: Path) -> dict[str, Recipe]:
    """Every pack/<name>/recipe.py, by backend name."""
    recipes = {}
    for path in sorted(pack.glob("*/recipe.py")):
        backend = path.parent.name
        recipes[backend] = _load(backend, path)
    return recipes


def _load(backend: str, path: Path) -> Recipe:
    name = f"runner_pack_{path.parent.parent.name}_{backend}".replace("-", "_").replace(".", "_")
    module = sys.modules.get(name)
    if module is None or getattr(module, "__file__", None) != str(path):
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - any mistake in a recipe is the user's to fix, at its line
            sys.modules.pop(name, None)
            line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__)) if f.filename == str(path)),
                        getattr(e, "lineno", None))
            raise UserError(f"the recipe cannot be loaded: {type(e).__name__}: {e}", where=Where(str(path), line)) from None
    missing = [f for f in ("SERVICES", "runtime", "service") if not hasattr(module, f)]
    if missing or not isinstance(module, RecipeModule):
        raise UserError(f"recipe does not define {', '.join(missing)}", where=Where(str(path)),
                        hint="a recipe defines SERVICES, runtime(target, base) and service(target, runtime)")
    for fn in ("runtime", "service", "base"):
        _check_arguments(module, fn, path)
    return Recipe(backend, path, frozenset(module.SERVICES), module)


def _check_arguments(module: ModuleType, name: str, path: Path) -> None:
    """Refuse a recipe function the plan could not call with its two arguments."""
    import inspect

    fn = getattr(module, name, None)
    if fn is None:
        return
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", None)
        raise UserError(f"the recipe's {name}() does not take two arguments", where=Where(str(path), line),
                        hint="runtime(target, base), service(target, runtime), base(target, platform)") from None
