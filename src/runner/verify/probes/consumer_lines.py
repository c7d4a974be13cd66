# Probe: every container GPUStack starts from this image, started here as GPUStack starts it, through
# the service's own command-line parser, without a device. Runs inside the image under test; runner
# puts `INPUT = {...}` above this text: the image's entrypoint, the model folders GPUStack mounts, and
# one case per container of each recorded deployment (pack/_consumer/gpustack.json) with its argv
# (the entrypoint GPUStack sets, else the image's, then the command), environment, working folder,
# the files GPUStack writes into the container, and which program it is.
#
# Each case is a real process: the argv as given, found on the container's PATH, with the image's
# environment overlaid by GPUStack's, in GPUStack's working folder. A site hook (sitecustomize, which
# also runs the image's own) waits for the program's own module to load and replaces the one function
# the program calls once its command line is parsed and validated (vLLM's serve command, Ray's
# `start`, SGLang's run_server, VoxBox's model start): it checks what it was given, writes what the
# program parsed, and ends the process before anything is served. A line the program rejects ends in
# the program's own error. vLLM runs on its own CPU platform (no device); MindIE, whose daemon has no
# command line, is checked the way GPUStack starts it: its script's preparation runs in bash with
# GPUStack's environment and working folder, then the binary it starts must be there.
# With {"mode": "version"} it runs the image's `vllm --version` on that CPU platform instead.
import json
import os
import subprocess
import sys
import tempfile
import time

HOOK = r'''
import os, sys
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
sys.modules.pop("sitecustomize", None)
try:  # the image's own site hook still runs
    import sitecustomize  # noqa: F401
except ImportError:
    pass
sys.path.append(_here)
if os.environ.get("RUNNER_INTERCEPT"):
    import runner_intercept
    runner_intercept.install()
'''

INTERCEPT = r'''
import argparse, importlib.abc, importlib.util, json, os, sys

PROGRAM = os.environ["RUNNER_INTERCEPT"]
RESULT = os.environ["RUNNER_INTERCEPT_RESULT"]
WATCH = {
    "vllm": ("vllm.entrypoints.cli.serve", "vllm_omni.entrypoints.cli.serve"),
    "ray": ("ray.scripts.scripts",),
    "sglang": ("sglang.launch_server",),
    "voxbox": ("vox_box.cmd.start",),
}[PROGRAM]
PARSERS = []


def done(values, problem=""):
    with open(RESULT, "w") as f:
        json.dump({"problem": problem, "values": values}, f, default=str)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def exact_options():
    """Every --option in argv is an option of a parser the program built (never a prefix of one)."""
    known = set()
    for p in PARSERS:
        known.update(p._option_string_actions)
    return [a.split("=", 1)[0] for a in sys.argv[1:] if a.startswith("--") and a.split("=", 1)[0] not in known]


def checked(values, unknown):
    if unknown:
        done(values, "not an option of the command: " + ", ".join(unknown))
    done(values)


def vllm_serve(args):
    values = {k: v for k, v in vars(args).items() if not callable(v)}
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
        engine = AsyncEngineArgs.from_cli_args(args)
        kv = engine.kv_transfer_config
        if kv is not None:  # the KV connector it names must load here
            from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
            name = kv.kv_connector if not isinstance(kv, dict) else kv["kv_connector"]
            KVConnectorFactory._registry[name]()
            if name == "LMCacheConnectorV1":
                import lmcache.integration.vllm.vllm_v1_adapter  # noqa: F401
    except Exception as e:  # the service's own error is the result
        done(values, "validating it fails: %s: %s" % (type(e).__name__, e))
    checked(values, exact_options())


def ray_start(**params):
    from ray.scripts.scripts import start
    known = {o for p in start.params for o in p.opts + p.secondary_opts}
    argv = sys.argv[2:] if sys.argv[1:2] == ["start"] else sys.argv[1:]
    unknown = [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]
    checked(params, unknown)


def sglang_run_server(server_args, *rest, **kw):
    import dataclasses
    checked(dataclasses.asdict(server_args), exact_options())


def voxbox_model(cfg):
    values = {k: v for k, v in vars(cfg).items() if not k.startswith("_")}
    try:
        import torch
        torch.device(cfg.device)  # the device GPUStack names is one torch can address
    except Exception as e:
        done(values, "the device %r: %s: %s" % (cfg.device, type(e).__name__, e))
    checked(values, exact_options())


def patch(module):
    if PROGRAM == "vllm":
        for obj in list(vars(module).values()):
            if isinstance(obj, type) and getattr(obj, "name", None) == "serve" and hasattr(obj, "cmd"):
                obj.cmd = staticmethod(vllm_serve)
    elif PROGRAM == "ray":
        module.start.callback = ray_start
    elif PROGRAM == "sglang":
        module.run_server = sglang_run_server
    elif PROGRAM == "voxbox":
        module.run_model_instance = voxbox_model


class Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        patch(module)


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in WATCH:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = Loader(spec.loader)
                return spec
        return None


def install():
    original = argparse.ArgumentParser.__init__

    def remembered(self, *a, **kw):
        original(self, *a, **kw)
        PARSERS.append(self)

    argparse.ArgumentParser.__init__ = remembered
    sys.meta_path.insert(0, Finder())
'''

CPU_PLATFORM = {  # vLLM's own CPU platform as the one platform plugin (every vLLM honours VLLM_PLUGINS)
    "runner_cpu_platform-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: runner-cpu-platform\nVersion: 1.0\n",
    "runner_cpu_platform-1.0.dist-info/entry_points.txt": "[vllm.platform_plugins]\nrunner_cpu = runner_cpu_platform:cpu\n",
    "runner_cpu_platform.py": "def cpu():\n    return 'vllm.platforms.cpu.CpuPlatform'\n",
}


def write(path, content, mode=0o644):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, mode)


def hook_folder():
    folder = tempfile.mkdtemp(prefix="runner-consumer-")
    for name, text in [("sitecustomize.py", HOOK), ("runner_intercept.py", INTERCEPT)] + list(CPU_PLATFORM.items()):
        write(os.path.join(folder, name), text)
    return folder


def run_program(case, hooks):
    """One container's process, intercepted once its command line is parsed: '' or what went wrong."""
    result = os.path.join(hooks, "result-%d.json" % os.getpid())
    if os.path.exists(result):
        os.remove(result)
    env = dict(os.environ, **case["env"])
    path = env.get("PYTHONPATH", "")
    env.update(PYTHONPATH=hooks + (os.pathsep + path if path else ""), RUNNER_INTERCEPT=case["program"],
               RUNNER_INTERCEPT_RESULT=result)
    if case["program"] == "vllm":
        env["VLLM_PLUGINS"] = "runner_cpu"
    try:
        done = subprocess.run(case["argv"], env=env, cwd=case["cwd"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=case.get("timeout", 600))
        output = done.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return "did not finish parsing within %ss" % case.get("timeout", 600)
    except OSError as e:
        return "cannot start %s: %s" % (case["argv"][0], e)
    if not os.path.exists(result):
        tail = [line for line in output.strip().splitlines() if line.strip()][-4:]
        return "the program ended (exit %s) before serving: %s" % (done.returncode, " | ".join(tail)[-700:])
    with open(result) as f:
        found = json.load(f)
    return found["problem"]


def run_mindie(case):
    """GPUStack's script up to the daemon's start, in bash, with its environment and working folder; then
    every binary the script would start (and the one it is given) must be there and executable."""
    script_path = case["argv"][0]
    if script_path not in case["files"]:
        return "the entrypoint %s is not a script GPUStack writes" % script_path
    script = case["files"][script_path]["content"]
    marker = script.find("\n## Execute")
    if marker < 0:
        return "GPUStack's script has no '## Execute' section: the check does not know where the daemon starts"
    prepare, execute = script[:marker], script[marker:]
    targets = [w for line in execute.splitlines() for w in line.split() if w.startswith(("$", "/")) and "daemon" in w]
    checks = "".join('test -x "%s" || { echo "not an executable: %s"; exit 1; }\n' % (t, t)
                     for t in targets + case["argv"][1:])
    shell = script.splitlines()[0][2:].strip() if script.startswith("#!") else "/bin/sh"
    if not os.access(shell, os.X_OK):
        return "the script's interpreter %s is not in the image" % shell
    body = prepare.replace("\nsource ", "\nsource_checked ") + checks + "echo prepared\n"
    body = 'source_checked() { [ -f "$1" ] || { echo "cannot source $1"; exit 1; }; source "$1"; }\n' + body
    env = dict(os.environ, **case["env"])
    if not os.path.isdir(case["cwd"] or "/"):
        return "the working folder %s is not in the image" % case["cwd"]
    done = subprocess.run([shell, "-c", body], env=env, cwd=case["cwd"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not output.endswith("prepared"):
        return "its preparation fails (exit %s): %s" % (done.returncode, output[-700:])
    return ""


def version():
    """`vllm --version` through the image's `vllm` entry point (on Ascend: the wrapper that sources CANN's
    environment), on vLLM's CPU platform."""
    hooks = hook_folder()
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=hooks + (os.pathsep + path if path else ""), VLLM_PLUGINS="runner_cpu")
    done = subprocess.run(["vllm", "--version"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(done.stdout.decode(errors="replace"))
    return done.returncode


def main():
    if INPUT.get("mode") == "version":  # noqa: F821
        return version()
    hooks = hook_folder()
    for path, content in INPUT["model_files"].items():  # noqa: F821 - INPUT is put above this text by runner
        write(path, content)
    if not INPUT["cases"]:  # noqa: F821
        print("no GPUStack deployment is recorded for this image (run `runner consumer --write`)")
        return 1
    results = []
    for case in INPUT["cases"]:  # noqa: F821
        for path, f in case["files"].items():  # what GPUStack writes into the container before it starts
            write(path, f["content"], int(f["mode"], 8))
        start = time.monotonic()
        problem = case.get("problem") or (run_mindie(case) if case["program"] == "mindie" else
                                          run_program(case, hooks) if case["program"] in ("vllm", "ray", "sglang", "voxbox")
                                          else "runner does not know how to check this program")
        results.append((case["name"], problem))
        print("%s (%.0f s): %s" % (case["name"], time.monotonic() - start,
                                  " ".join(json.dumps(a) if " " in a or "{" in a else a for a in case["argv"])))
        if case.get("also"):
            print("    the same start as: " + ", ".join(case["also"]))
        if problem:
            print("    " + problem.replace("\n", "\n    "))
    # the summary comes last, so the report's excerpt (the output's end) keeps it
    for name, problem in results:
        print("%-28s %s" % (name, "ok" if not problem else "FAILED: " + problem.splitlines()[0][:200]))
    return 1 if any(problem for _, problem in results) else 0


sys.exit(main())
