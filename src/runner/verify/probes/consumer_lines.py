# Probe: every container GPUStack starts from this image, started here as GPUStack starts it, through
# the service's own command-line parser, without a device. Runs inside the image under test; runner
# puts `INPUT = {...}` above this text: the model folders GPUStack mounts, the site hooks (the files of
# runner/verify/probes/consumer_hooks), and one case per container of each recorded deployment
# (pack/_consumer/gpustack.json): its argv (the entrypoint GPUStack sets, else the image's, then the
# command), environment, working folder, the files GPUStack writes into the container, and its program.
#
# The first line of each program is a real process: the argv as given, found on the container's PATH,
# with the image's environment overlaid by GPUStack's, in GPUStack's working folder. A site hook
# (which also runs the image's own) replaces, when the program's module loads, the one function the
# program calls once its command line is parsed and validated (runner_intercept); it checks what it was
# given, writes what the program parsed, and ends the process before anything is served. A line the
# program rejects ends in the program's own error. The program's further lines run the same way from
# one warm interpreter that forks per line (runner_warm: their argv, environment and working folder,
# the console script's own function), where the command is a Python console script of this
# interpreter; otherwise each is a real process too. vLLM runs on its own CPU platform and SGLang on its
# CPU engine (there is no device here): the one variable each adds to GPUStack's environment.
# MindIE, whose daemon has no command line, is checked the way GPUStack starts it: its script's
# preparation runs in its interpreter with GPUStack's environment and working folder, then every
# binary it starts must be there. With {"mode": "version"} it runs the image's `vllm --version` instead.
import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

CPU_PLATFORM = {  # vLLM's own CPU platform as the one platform plugin (every vLLM honours VLLM_PLUGINS)
    "runner_cpu_platform-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: runner-cpu-platform\nVersion: 1.0\n",
    "runner_cpu_platform-1.0.dist-info/entry_points.txt": "[vllm.platform_plugins]\nrunner_cpu = runner_cpu_platform:cpu\n",
    "runner_cpu_platform.py": "def cpu():\n    return 'vllm.platforms.cpu.CpuPlatform'\n",
}
PROGRAMS = ("vllm", "ray", "sglang", "voxbox")
# what each service needs to read its command line on a machine without a device: its own CPU mode
NO_DEVICE = {"vllm": {"VLLM_PLUGINS": "runner_cpu"}, "sglang": {"SGLANG_USE_CPU_ENGINE": "1"}}
# SGLang loads its CUDA kernels (linked to the driver's libcuda.so.1) to validate a line; where a device
# host would inject the driver, the image's own copy of it stands in: CUDA's forward-compatibility
# library, else the toolkit's link stub
NEEDS_DRIVER = ("sglang",)
DRIVER_COPIES = ("/usr/local/cuda*/compat/libcuda.so.1", "/usr/local/cuda*/lib64/stubs/libcuda.so",
                 "/usr/local/cuda*/targets/*/lib/stubs/libcuda.so")


def write(path, content, mode=0o644):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, mode)


def hook_folder():
    folder = tempfile.mkdtemp(prefix="runner-consumer-")
    for name, text in list(INPUT.get("hooks", {}).items()) + list(CPU_PLATFORM.items()):  # noqa: F821
        write(os.path.join(folder, name), text)
    return folder


def hooked_env(env, program, hooks, result):
    """The environment a program runs with: GPUStack's over the image's, and the hook on its path."""
    env = dict(os.environ, **env)
    path = env.get("PYTHONPATH", "")
    env.update(PYTHONPATH=hooks + (os.pathsep + path if path else ""), RUNNER_INTERCEPT=program,
               RUNNER_INTERCEPT_RESULT=result)
    env.update(NO_DEVICE.get(program, {}))
    if program in NEEDS_DRIVER and driver_folder(hooks):
        path = env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = driver_folder(hooks) + (os.pathsep + path if path else "")
    return env


def driver_folder(hooks):
    """A folder holding libcuda.so.1 where the image has a copy of the driver library but no loadable
    one (no device host injected it), else ''."""
    folder = os.path.join(hooks, "driver")
    if os.path.isdir(folder):
        return folder
    try:
        ctypes.CDLL("libcuda.so.1")
        return ""
    except OSError:
        pass
    found = sorted(f for pattern in DRIVER_COPIES for f in glob.glob(pattern))
    if not found:
        return ""
    os.makedirs(folder)
    os.symlink(found[0], os.path.join(folder, "libcuda.so.1"))
    return folder


# refusals a service makes only because its CPU mode is not a device: the line got past the parser, and
# what it asks for needs a CUDA device to check; said as "not checked here", never passed silently
NEEDS_DEVICE = ("only supports CUDA device",)


def needs_device(problem):
    return bool(problem) and any(phrase in problem for phrase in NEEDS_DEVICE)


def judge(result, exit_code, output, timed_out, timeout):
    if timed_out:
        return "did not finish parsing within %ss" % timeout
    if not os.path.exists(result):
        tail = [line for line in output.strip().splitlines() if line.strip()][-4:]
        return "the program ended (exit %s) before serving: %s" % (exit_code, " | ".join(tail)[-700:])
    with open(result) as f:
        return json.load(f)["problem"]


def run_process(case, hooks, index):
    """One container's process, exactly as started: '' or what went wrong."""
    result = os.path.join(hooks, "result-%d.json" % index)
    env = hooked_env(case["env"], case["program"], hooks, result)
    try:
        done = subprocess.run(case["argv"], env=env, cwd=case["cwd"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=case["timeout"])
    except subprocess.TimeoutExpired:
        return judge(result, None, "", True, case["timeout"])
    except OSError as e:
        return "cannot start %s: %s" % (case["argv"][0], e)
    return judge(result, done.returncode, done.stdout.decode(errors="replace"), False, case["timeout"])


def console_entry(argv0, env):
    """MODULE:FUNCTION of the Python console script argv0 names, when this interpreter runs it."""
    path = shutil.which(argv0, path=dict(os.environ, **env).get("PATH"))
    if not path:
        return None
    with open(path, "rb") as f:
        text = f.read(4096).decode(errors="replace")
    first = text.splitlines()[0] if text else ""
    if not first.startswith("#!") or "python" not in first:
        return None  # a wrapper script: only a real process runs what it does
    interpreter = first[2:].split()[0]
    if os.path.realpath(shutil.which(interpreter) or interpreter) != os.path.realpath(sys.executable):
        return None
    # the script pip (or uv) wrote names its function: the installed one wins where two packages
    # declare the same command (vllm-omni's `vllm` over vLLM's)
    found = re.search(r"^from ([\w.]+) import ([\w.]+)$", text, re.M)
    return "%s:%s" % found.groups() if found else None


def run_warm(cases, hooks, first):
    """Further lines of one program, forked from one interpreter that imported it once."""
    program, work = cases[0]["program"], tempfile.mkdtemp(prefix="runner-warm-")
    entry = console_entry(cases[0]["argv"][0], cases[0]["env"])
    if entry is None:
        return [run_process(c, hooks, first + i) for i, c in enumerate(cases)]
    asked = []
    for i, c in enumerate(cases):
        result = os.path.join(work, "result-%d.json" % i)
        asked.append({"argv": c["argv"], "env": hooked_env(c["env"], program, hooks, result), "cwd": c["cwd"],
                      "result": result, "output": os.path.join(work, "output-%d" % i), "timeout": c["timeout"]})
    write(os.path.join(work, "cases.json"), json.dumps(asked))
    env = hooked_env({}, program, hooks, os.path.join(work, "import.json"))
    done = subprocess.run([sys.executable, os.path.join(hooks, "runner_warm.py"), entry, os.path.join(work, "cases.json"),
                           os.path.join(work, "results.json")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not os.path.exists(os.path.join(work, "results.json")):
        return ["the warm interpreter failed (exit %s): %s" % (done.returncode, done.stdout.decode(errors="replace")[-700:])
                ] * len(cases)
    with open(os.path.join(work, "results.json")) as f:
        ran = json.load(f)
    problems = []
    for a, r in zip(asked, ran):
        with open(a["output"], errors="replace") as f:
            problems.append(judge(a["result"], r["exit"], f.read(), r["timed_out"], a["timeout"]))
    return problems


def run_mindie(case):
    """GPUStack's script up to the daemon's start, with its environment and working folder; then every
    binary the script would start (and the one it is given) must be there and executable."""
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
    if not os.path.isdir(case["cwd"] or "/"):
        return "the working folder %s is not in the image" % case["cwd"]
    body = 'source_checked() { [ -f "$1" ] || { echo "cannot source $1"; exit 1; }; source "$1"; }\n'
    body += prepare.replace("\nsource ", "\nsource_checked ") + checks + "echo prepared\n"
    done = subprocess.run([shell, "-c", body], env=dict(os.environ, **case["env"]), cwd=case["cwd"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not output.endswith("prepared"):
        return "its preparation fails (exit %s): %s" % (done.returncode, output[-700:])
    return ""


def version():
    """`vllm --version` through the image's `vllm` entry point (on Ascend: the wrapper that sources CANN's
    environment), on vLLM's CPU platform."""
    hooks = hook_folder()
    try:
        path = os.environ.get("PYTHONPATH", "")
        env = dict(os.environ, PYTHONPATH=hooks + (os.pathsep + path if path else ""), VLLM_PLUGINS="runner_cpu")
        done = subprocess.run(["vllm", "--version"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        shutil.rmtree(hooks, ignore_errors=True)  # the probe also runs on hosts (real-service checks)
    sys.stdout.write(done.stdout.decode(errors="replace"))
    return done.returncode


def run_all(cases, hooks):
    """Each case's problem ('' when it passed) and how it ran, in case order."""
    found = {}
    for i, case in enumerate(cases):
        for path, f in case["files"].items():  # what GPUStack writes into the container before it starts
            write(path, f["content"], int(f["mode"], 8))
        if case.get("problem"):
            found[i] = (case["problem"], "")
        elif case["program"] == "mindie":
            found[i] = (run_mindie(case), "bash")
        elif case["program"] not in PROGRAMS:
            found[i] = ("runner does not know how to check this program", "")
    for program in PROGRAMS:
        mine = [i for i, c in enumerate(cases) if c["program"] == program and i not in found]
        if mine:
            found[mine[0]] = (run_process(cases[mine[0]], hooks, mine[0]), "process")
        if len(mine) > 1:
            for i, problem in zip(mine[1:], run_warm([cases[i] for i in mine[1:]], hooks, len(cases))):
                found[i] = (problem, "forked")
    return [found[i] for i in range(len(cases))]


def brief(problem, width=200):
    """A problem's first line within `width`: its start and its end, where the program's own error
    comes last (after whatever warnings it printed first)."""
    first = problem.splitlines()[0]
    return first if len(first) <= width else first[:60] + " ... " + first[65 - width:]


def main():
    if INPUT.get("mode") == "version":  # noqa: F821 - INPUT is put above this text by runner
        return version()
    for path, content in INPUT["model_files"].items():  # noqa: F821
        write(path, content)
    cases = INPUT["cases"]  # noqa: F821
    if not cases:
        print("no GPUStack deployment is recorded for this image (run `runner consumer --write`)")
        return 1
    start = time.monotonic()
    hooks = hook_folder()
    try:
        results = run_all(cases, hooks)
    finally:
        shutil.rmtree(hooks, ignore_errors=True)  # the probe also runs on hosts (real-service checks)
    for case, (problem, how) in zip(cases, results):
        print("%s%s: %s" % (case["name"], " (%s)" % how if how else "",
                            " ".join(json.dumps(a) if " " in a or "{" in a else a for a in case["argv"])))
        if case.get("also"):
            print("    the same start as: " + ", ".join(case["also"]))
        if problem:
            print("    " + problem.replace("\n", "\n    "))
    print("%d starts in %.0f s" % (len(cases), time.monotonic() - start))
    # the summary comes last, so the report's excerpt (the output's end) keeps it
    failed = 0
    for case, (problem, _) in zip(cases, results):
        if needs_device(problem):
            print("%-28s not checked here (needs a CUDA device): %s" % (case["name"], brief(problem)))
        elif problem and known(case, problem):
            print("%-28s known to fail (pack/_consumer/deployments.yaml): %s" % (case["name"], case["known"]["why"]))
        else:
            failed += bool(problem)
            print("%-28s %s" % (case["name"], "ok" if not problem else "FAILED: " + brief(problem)))
    return 1 if failed else 0


def known(case, problem):
    """Whether a failure is the one deployments.yaml declares for this start (any other still fails)."""
    return bool(case.get("known")) and case["known"]["says"] in problem


sys.exit(main())
