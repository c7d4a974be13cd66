"""Hostile input, counted: N random edits of the real matrix.yaml and catalog, and a set of hostile CLI
arguments, each run as `runner ...` in a child with a memory cap and a timeout. Prints how many runs
ended in exit 0, a clear error (exit 2), a traceback, a crash (signal) or a hang, and the largest
memory a run used. Goal: zero tracebacks, crashes and hangs. N=600 by default (N=... to change).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
N = int(os.environ.get("N", "600"))
SNIPPETS = ["version: 01.2", "version: 1.02", "version: ' 8.5.0'", 'base_image: "x:{version"', "base_image: x:{arch}",
            "namespace: |\n  gpustack", "- {version: 0.14.1, status: gone}", "platforms: [linux/s390x]", "python: 3",
            "&x a", "*x", "? [a]\n: b", "{", "]", "- - -", "variant: A B", "archs: 7", "services: {vllm: 0.1}",
            "releases: []", "backends: ~", "\t", "'", '"', "!!python/object:os.system", "0x10: y", "a: &a [*a]",
            "x: " + "[" * 5000, "\x00", "\x1b[31m", "versión: 1", "version: ١٢.٨",
            # the third trial's kinds: values a shell or a parser would take apart
            'vllm: ["0.8.3\\n"]', 'version: "4.2.0\\n"', "version: 1." + "9" * 400, 'base_image: "x:{{{version}"',
            "namespace: !!python/object/apply:os.system [true]", "python: 3.12$(touch /tmp/PWNED)",
            'archs: [gfx950";touch /tmp/PWNED;"]', '"deprecated": "yes",', 'base_image: "x:{version}; rm -rf /"']
ARGS = [["parse", "gpustack/runner:cuda12.8-vllm0.14.1" + s] for s in ("@sha256:zz", " ", "\n", "-dev-dev", "\x7f")] + \
       [["matrix", "--backend", v] for v in ("", "CUDA", "cuda ", "../x", "\x1b", "a" * 5000)] + \
       [["matrix", "--service-version", v] for v in ("0.14.1.", "..", "01", "x")] + \
       [["catalog", "--platform", v] for v in ("linux/s390x", "linux", "")] + \
       [["run-command", "cuda12.8-vllm0.14.1", "--devices", v] for v in ("a", "-1", "0,,1", "1" * 30)] + \
       [["dockerfile", t] for t in ("", "cuda", "cuda12.8-vllm9.9.9", "cuda12.8-vllm0.14.1-linux-s390x")] + \
       [["resolve", "--jobs", v] for v in ("0", "-1", "x")] + [["profile", "--backend", "nope"]] + \
       [["parse", r] for r in ("Docker.IO/gpustack/runner:cuda12.8-vllm0.14.1", "docker.io:99999/gpustack/runner:cuda12.8-vllm0.14.1",
                               "gpustack/runner:cuda12.8-vllm0." + "9" * 400)] + \
       [["catalog", "--write", "/proc/runner-catalog.json"], ["build", "--report", "/proc/r.json", "--backend", "cuda"],
        ["smoke", "--target", "cuda12.8-vllm0.14.1", "--", "--privileged"], ["matrix", "--matrix", "/tmp/runner-fuzz-loop.yaml"],
        ["promote", "--registry", "127.0.0.1:99999", "--username", "u"], ["promote", "--registry", "Docker.IO", "--username", "u"]]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        edit = rng.choice(["snippet", "delete", "duplicate", "bytes", "indent"])
        if edit == "snippet":
            lines[i] = " " * (len(lines[i]) - len(lines[i].lstrip())) + rng.choice(SNIPPETS)
        elif edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "bytes":
            pos = rng.randint(0, len(lines[i]))
            lines[i] = lines[i][:pos] + "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 6))) + lines[i][pos:]
        else:
            lines[i] = " " * rng.randint(0, 12) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


def run(args: list[str], cwd: Path) -> tuple[str, int]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        out = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, timeout=60,
                             preexec_fn=limit, env={**os.environ, "RUNNER_NO_CACHE": "1"})
    except subprocess.TimeoutExpired:
        return "hang", 0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    err = out.stderr.decode(errors="replace")
    if out.returncode < 0:
        return "crash", max(rss, before)
    if "Traceback" in err:
        return "traceback", rss
    return {0: "exit 0", 2: "clear error (exit 2)"}.get(out.returncode, f"exit {out.returncode}"), rss


def main() -> None:
    loop = Path("/tmp/runner-fuzz-loop.yaml")  # a symbolic link to itself, for --matrix
    loop.unlink(missing_ok=True)
    loop.symlink_to(loop)
    rng = random.Random(1)
    outcomes, worst, tracebacks = Counter(), 0, []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "pack", work / "pack", ignore=shutil.ignore_patterns("__pycache__"))
        matrix = (ROOT / "matrix.yaml").read_text()
        catalog = (ROOT / "src" / "runner" / "catalog.json").read_text()
        for i in range(N):
            if i % 4 == 3:  # a quarter of the runs break the catalog instead
                (work / "catalog.json").write_text(mutate(catalog, rng), encoding="utf-8", errors="surrogatepass")
                args = ["catalog", "--file", str(work / "catalog.json"), "--format", "json"]
            else:
                (work / "matrix.yaml").write_text(mutate(matrix, rng), encoding="utf-8", errors="surrogatepass")
                args = [rng.choice(["matrix", "plan", "catalog"]), "--matrix", str(work / "matrix.yaml")]
            kind, rss = run(args, work)
            outcomes[kind] += 1
            worst = max(worst, rss)
            if kind in ("traceback", "crash", "hang"):
                tracebacks.append(args)
        for args in ARGS:
            kind, rss = run(args, ROOT)
            outcomes["args: " + kind] += 1
            if kind in ("traceback", "crash", "hang") or kind == "exit 0" and args[0] != "matrix" and args[-1]:
                tracebacks.append(args)
    loop.unlink(missing_ok=True)
    print(json.dumps(dict(outcomes), indent=1))
    print(f"{N} mutated files and {len(ARGS)} hostile arguments; largest child: {worst / 1024:.0f} MB")
    if tracebacks:
        print("needs a look:", tracebacks[:10])


if __name__ == "__main__":
    main()
