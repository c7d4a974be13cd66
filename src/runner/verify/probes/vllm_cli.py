# Probe: vLLM's own command line, without an accelerator. Runs inside the image under test; runner
# puts `INPUT = {...}` above this text. Written for Python 3.8+ and vLLM 0.8 to 0.14 (and vendor builds).
#
# vLLM builds every subcommand's parser, and the engine-argument defaults under it, before reading
# argv; that needs a platform, and an image with no device has none ("Failed to infer device type").
# So this probe registers vLLM's own CPU platform as the one platform plugin of this process (a
# distribution on a private sys.path entry, selected with VLLM_PLUGINS, which every version honours),
# then:
#   mode "version": runs the image's `vllm --version` (the CLI entry point) with that plugin;
#   mode "serve":   builds the `serve` parser the way the `vllm` CLI does (vllm-omni's when a case
#                   passes --omni), parses each consumer command line, validates it as `vllm serve`
#                   would, requires every option to be an exact option of the parser (never a prefix
#                   of another), and imports what a case names (a KV connector and its library).
# Each case prints "ok" or the real error; the probe exits 1 when any case failed.
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import traceback


def cpu_platform_env():
    folder = tempfile.mkdtemp(prefix="runner-vllm-cpu-")
    info = os.path.join(folder, "runner_cpu_platform-1.0.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: runner-cpu-platform\nVersion: 1.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[vllm.platform_plugins]\nrunner_cpu = runner_cpu_platform:cpu\n")
    with open(os.path.join(folder, "runner_cpu_platform.py"), "w") as f:
        f.write("def cpu():\n    return 'vllm.platforms.cpu.CpuPlatform'\n")
    return folder, {"VLLM_PLUGINS": "runner_cpu"}


def version():
    folder, env = cpu_platform_env()
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=folder + (os.pathsep + path if path else ""), **env)
    done = subprocess.run(["vllm", "--version"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(done.stdout.decode(errors="replace"))
    return done.returncode


def serve_parser(omni):
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser
    try:
        from vllm.entrypoints.utils import cli_env_setup
        cli_env_setup()
    except ImportError:
        pass
    if omni:
        import vllm_omni.entrypoints.cli.serve as serve_module
    else:
        import vllm.entrypoints.cli.serve as serve_module
    parser = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    commands = {}
    for command in serve_module.cmd_init():
        command.subparser_init(subparsers).set_defaults(dispatch_function=command.cmd)
        commands[command.name] = command
    return parser, subparsers.choices["serve"], commands["serve"]


def check_case(case, parsers):
    argv = case["argv"]
    omni = "--omni" in argv
    if omni not in parsers:
        parsers[omni] = serve_parser(omni)
    parser, serve, command = parsers[omni]
    known = serve._option_string_actions
    unknown = [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]
    if unknown:
        return "not an option of `vllm serve`: " + ", ".join(unknown)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit:
        return "`vllm serve` rejects it: " + stderr.getvalue().strip().splitlines()[-1]
    for name, value in case.get("expect", {}).items():
        if str(getattr(args, name, None)) != str(value):
            return "--%s parsed as %r, not %r" % (name.replace("_", "-"), getattr(args, name, None), value)
    try:
        command.validate(args)
        from vllm.engine.arg_utils import AsyncEngineArgs
        AsyncEngineArgs.from_cli_args(args)
    except Exception as e:  # noqa: BLE001 - the real error is the result
        return "validating it fails: %s: %s" % (type(e).__name__, e)
    for module in case.get("imports", []):
        try:
            if module.startswith("kv:"):  # vLLM's KV connector registry
                from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
                KVConnectorFactory._registry[module[3:]]()
            elif module.startswith("script:"):  # which package's console script `vllm` is
                script, target = module[7:].split("=", 1)
                import importlib.metadata as md
                found = [ep.value for ep in md.entry_points(group="console_scripts", name=script)] \
                    if sys.version_info >= (3, 10) else [ep.value for ep in md.entry_points().get("console_scripts", [])
                                                         if ep.name == script]
                if not any(v.startswith(target) for v in found):
                    return "the `%s` command is %s, not %s's" % (script, found or "missing", target)
            else:
                __import__(module)
        except Exception as e:  # noqa: BLE001
            return "%s does not load: %s: %s" % (module, type(e).__name__, e)
    return ""


def serve():
    folder, env = cpu_platform_env()
    sys.path.insert(0, folder)
    os.environ.update(env)
    parsers, results = {}, []
    for case in INPUT["cases"]:  # noqa: F821 - INPUT is put above this text by runner
        try:
            problem = check_case(case, parsers)
        except Exception:  # noqa: BLE001
            problem = "the probe failed:\n" + traceback.format_exc(limit=6)
        results.append((case["name"], problem))
        print("%s: vllm %s" % (case["name"], " ".join(json.dumps(a) if " " in a or "{" in a else a for a in case["argv"])))
        if problem:
            print("    " + problem.replace("\n", "\n    "))
    # the summary comes last, so the report's excerpt (the output's end) keeps it
    for name, problem in results:
        print("%-16s %s" % (name, "ok" if not problem else "FAILED: " + problem.splitlines()[0][:200]))
    return 1 if any(problem for _, problem in results) else 0


sys.exit(version() if INPUT["mode"] == "version" else serve())  # noqa: F821
