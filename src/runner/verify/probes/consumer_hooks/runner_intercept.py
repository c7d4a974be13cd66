# Stops a service once its own command line is parsed and validated, and says what it parsed.
# Installed by the site hook beside it (RUNNER_INTERCEPT names the program); written into the image by
# the consumer_lines probe. For each program, the one function the program calls with the parsed
# line is replaced when the program's module loads: vLLM's `serve` command (vllm-omni's too), Ray's
# `ray start`, SGLang's run_server, VoxBox's model start. The replacement checks what only a started
# service would (vLLM's engine arguments and the KV connector the line names, the device VoxBox is
# given), requires every --option of the line to be an option the program's parsers have (never a
# prefix that argparse would take for one), writes {"problem", "values"} to RUNNER_INTERCEPT_RESULT
# and ends the process. Python 3.8+, standard library and the program's own modules only.
import argparse
import importlib.abc
import json
import os
import sys

WATCH = {
    "vllm": ("vllm.entrypoints.cli.serve", "vllm_omni.entrypoints.cli.serve"),
    "ray": ("ray.scripts.scripts",),
    # the launcher module that `sglang serve` calls, and the server it starts, which the launcher run as
    # `python3 -m sglang.launch_server` (SGLang before 0.5.5, runner.compose.commands) imports by name
    "sglang": ("sglang.launch_server", "sglang.srt.entrypoints.http_server"),
    "voxbox": ("vox_box.cmd.start",),
}
PARSERS = []  # every argparse parser the program built since reset()


def reset():
    """Forget the parsers built so far (a process forked to run one more line)."""
    del PARSERS[:]


def done(values, problem=""):
    with open(os.environ["RUNNER_INTERCEPT_RESULT"], "w") as f:
        json.dump({"problem": problem, "values": values}, f, default=str)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _unknown(argv, known):
    return [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]


def checked(values, unknown):
    if unknown:
        done(values, "not an option of the command: " + ", ".join(unknown))
    done(values)


def argparse_unknown():
    known = set()
    for p in PARSERS:
        known.update(p._option_string_actions)
    return _unknown(sys.argv[1:], known)


def vllm_serve(args):
    values = {k: v for k, v in vars(args).items() if not callable(v)}
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs

        engine = AsyncEngineArgs.from_cli_args(args)
        kv = engine.kv_transfer_config
        if kv is not None:  # the KV connector the line names must load here
            from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

            name = kv["kv_connector"] if isinstance(kv, dict) else kv.kv_connector
            KVConnectorFactory._registry[name]()
            if name == "LMCacheConnectorV1":
                import lmcache.integration.vllm.vllm_v1_adapter  # noqa: F401
    except Exception as e:  # the service's own error is the result
        done(values, "validating it fails: %s: %s" % (type(e).__name__, e))
    checked(values, argparse_unknown())


def ray_start(**params):
    from ray.scripts.scripts import start

    known = {o for p in start.params for o in p.opts + p.secondary_opts}
    checked(params, _unknown(sys.argv[1:], known))


def fields_of(record):
    """A record's fields: a dataclass's (SGLang up to 0.5.2x), else its public attributes (SGLang
    0.5.22's ServerArgs is a plain class assembled from namespaces, no longer a dataclass)."""
    import dataclasses

    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    names = getattr(type(record), "__struct_fields__", None) or [n for n in dir(record) if not n.startswith("_")]
    values = {}
    for name in names:
        try:
            value = getattr(record, name)
        except Exception:  # a property that needs what only a started server has
            continue
        if not callable(value):
            values[name] = value
    return values


def sglang_run_server(server_args, *rest, **kw):
    checked(fields_of(server_args), argparse_unknown())


def voxbox_model(cfg):
    values = {k: v for k, v in vars(cfg).items() if not k.startswith("_")}
    try:
        import torch

        torch.device(cfg.device)  # the device GPUStack names is one torch can address
    except Exception as e:
        done(values, "the device %r: %s: %s" % (cfg.device, type(e).__name__, e))
    checked(values, argparse_unknown())


def patch(program, module):
    if program == "vllm":
        for obj in list(vars(module).values()):
            if isinstance(obj, type) and getattr(obj, "name", None) == "serve" and hasattr(obj, "cmd"):
                obj.cmd = staticmethod(vllm_serve)
    elif program == "ray":
        module.start.callback = ray_start
    elif program == "sglang":
        if module.__name__ == "sglang.launch_server":
            module.run_server = sglang_run_server
        else:
            module.launch_server = sglang_run_server
    elif program == "voxbox":
        module.run_model_instance = voxbox_model


class Loader(importlib.abc.Loader):
    def __init__(self, inner, program):
        self.inner, self.program = inner, program

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        patch(self.program, module)

    def get_code(self, name):
        # `python3 -m` runs a watched module's code as __main__ (runpy asks for it), unpatched: what it
        # imports is watched instead
        return self.inner.get_code(name)


class Finder(importlib.abc.MetaPathFinder):
    def __init__(self, program):
        self.program = program

    def find_spec(self, name, path=None, target=None):
        if name not in WATCH[self.program]:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = Loader(spec.loader, self.program)
                return spec
        return None


def install():
    original = argparse.ArgumentParser.__init__

    def remembered(self, *a, **kw):
        original(self, *a, **kw)
        PARSERS.append(self)

    argparse.ArgumentParser.__init__ = remembered
    sys.meta_path.insert(0, Finder(os.environ["RUNNER_INTERCEPT"]))
