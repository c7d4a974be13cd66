"""Reading the dagger-io SDK's lazy query objects offline: every chained call is kept as a selection
(type, field, arguments) until it is sent to an engine, so tests can see exactly what a function
asks the engine to do without any engine."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DAGGER_MAIN_OBJECT", "Runner")
os.environ.setdefault("DAGGER_MODULE", "runner")


def is_lazy(value: Any) -> bool:
    return hasattr(value, "_ctx") and hasattr(value._ctx, "selections")


def calls(obj: Any) -> list[tuple[str, dict[str, Any]]]:
    """The chain of an SDK object as (field, args) pairs, from the root query on."""
    return [(sel.name, dict(sel.args)) for sel in obj._ctx.selections]


def decode(value: Any) -> Any:
    """Nested plain data for a lazy object: a list of {field: args} with lazy args decoded too."""
    if is_lazy(value):
        return [{name: {k: decode(v) for k, v in args.items()}} for name, args in calls(value)]
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


async def typedefs(module=None) -> dict:
    """Run the SDK's own registration (Module._typedefs) with the final `id()` call left lazy, and
    read back what `dagger functions` would show: objects, their functions and arguments, enums.
    Without a module, the Runner module of this checkout is used."""
    import dagger

    if module is None:
        from runner.dagger.module import Runner

        module = Runner.__dagger_module__
    original = dagger.Module.id

    async def lazy_id(self):  # the one call that would need an engine; keep the query instead
        return self

    dagger.Module.id = lazy_id
    try:
        query = await module._typedefs()
    finally:
        dagger.Module.id = original
    result: dict = {"description": "", "objects": {}, "enums": {}}
    for name, args in calls(query):
        if name == "withDescription":
            result["description"] = args["description"]
        elif name == "withObject":
            obj = _object(args["object"])
            result["objects"][obj["name"]] = obj
        elif name == "withEnum":
            enum = _enum(args["enum"])
            result["enums"][enum["name"]] = enum
    return result


def _object(typedef) -> dict:
    obj: dict = {"functions": {}}
    for name, args in calls(typedef):
        if name == "withObject":
            obj["name"], obj["description"] = args["name"], args.get("description", "")
        elif name == "withField":
            obj.setdefault("fields", {})[args["name"]] = _type(args["typeDef"])
        elif name in ("withFunction", "withConstructor"):
            fn = _function(args["function"])
            obj["functions"][fn["name"]] = fn
    return obj


def _function(fn) -> dict:
    out: dict = {"args": {}, "cache": None, "description": ""}
    for name, args in calls(fn):
        if name == "function":
            out["name"], out["returns"] = args["name"], _type(args["returnType"])
        elif name == "withDescription":
            out["description"] = args["description"]
        elif name == "withCachePolicy":
            out["cache"] = str(args["policy"])
        elif name == "withArg":
            out["args"][args["name"]] = {"type": _type(args["typeDef"]), "description": args.get("description", ""),
                                         "default": args.get("defaultValue"), "default_path": args.get("defaultPath"),
                                         "ignore": args.get("ignore")}
    return out


def _type(typedef) -> str:
    kind, name, optional, element = "", "", False, ""
    for field, args in calls(typedef):
        if field == "withKind":
            kind = str(args["kind"]).rsplit(".", 1)[-1]
        elif field in ("withObject", "withEnum", "withScalar", "withInterface"):
            name = args["name"]
        elif field == "withListOf":
            element = _type(args["elementType"])
        elif field == "withOptional":
            optional = bool(args["optional"])
    label = f"[{element}]" if element else (name or kind)
    return label + ("?" if optional else "")


def _enum(typedef) -> dict:
    out: dict = {"members": {}}
    for name, args in calls(typedef):
        if name == "withEnum":
            out["name"], out["description"] = args["name"], args.get("description", "")
        elif name == "withEnumMember":
            out["members"][args["name"]] = {"value": args.get("value"), "description": args.get("description")}
    return out
