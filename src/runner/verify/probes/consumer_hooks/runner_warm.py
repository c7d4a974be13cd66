# Runs many command lines of one program from one interpreter: imports the console script's module
# once (the site hook has installed runner_intercept), then forks one child per line, which takes the
# line's environment, working folder and argv and calls the console script's function, as the script
# would. What the program reads when it runs (argv, its variables, the files it opens) is the line's;
# what it did at import is this interpreter's. Usage: runner_warm.py MODULE:FUNCTION CASES RESULTS, with
# CASES a JSON list of {argv, env, cwd, result, output, timeout}; RESULTS gets [{exit, timed_out}].
import importlib
import json
import os
import sys
import time
import traceback


def child(case, function):
    fd = os.open(case["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        os.environ.clear()
        os.environ.update(case["env"])
        if case["cwd"]:
            os.chdir(case["cwd"])
        sys.argv = list(case["argv"])
        import runner_intercept

        runner_intercept.reset()
        code = function()
        os._exit(code if isinstance(code, int) else 0)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
    except BaseException:  # noqa: B902 - the program's own failure, in its own words
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def main():
    entry, cases_path, results_path = sys.argv[1:4]
    module_name, _, attrs = entry.partition(":")
    function = importlib.import_module(module_name)
    for attr in attrs.split("."):
        function = getattr(function, attr)
    with open(cases_path) as f:
        cases = json.load(f)
    results = []
    for case in cases:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(case, function)
        deadline, timed_out = time.monotonic() + case["timeout"], False
        while True:
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                _, status = os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.1)
        results.append({"exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status),
                        "timed_out": timed_out})
    with open(results_path, "w") as f:
        json.dump(results, f)


main()
