# Probe: `pip check` in the image under test, with the requirements a recipe knowingly overrides
# allowed by name (the vLLM an SGLang image starts from keeps its FlashInfer pin; SGLang's wins).
# runner puts `INPUT = {...}` above this text: {"superseded": {"vllm": ["flashinfer-python", ...]}}.
import re
import subprocess
import sys


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


superseded = {norm(d): {norm(r) for r in reqs} for d, reqs in INPUT["superseded"].items()}  # noqa: F821
done = subprocess.run([sys.executable, "-m", "pip", "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      universal_newlines=True)
bad = 0
for line in done.stdout.splitlines():
    # "vllm 0.14.1 has requirement flashinfer-python==0.5.3, but you have flashinfer-python 0.6.1."
    found = re.match(r"^(\S+) \S+ (?:has requirement|requires) ([A-Za-z0-9._-]+)", line)
    if found and norm(found.group(2)) in superseded.get(norm(found.group(1)), ()):
        print("%s  (allowed: the recipe supersedes this requirement)" % line)
    else:
        print(line)
        bad += bool(line.strip()) and not line.startswith("No broken requirements")
if done.returncode and not done.stdout.strip():
    print("pip check failed without saying why (exit code %d)" % done.returncode)
    bad = 1
sys.exit(1 if bad else 0)
