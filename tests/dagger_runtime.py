"""What the Dagger engine's Python runtime does to install and load a module, replayed for real with
the same tools (read from dagger/dagger's sdk/python/runtime: main.go, discovery.go, python.go):

1. the module context is dagger.json, the `source` folder and the `include` paths, git-ignores applied;
   `.venv` and `sdk` in the source folder are dropped;
2. the engine's SDK source (its sdk/python, version 0.0.0) is copied into <source>/sdk;
3. with a uv.lock: `uv lock`, then `uv sync --no-dev` into UV_PROJECT_ENVIRONMENT; without one:
   `uv pip install -e ./sdk -e .`, then `uv pip check`;
4. the runtime starts `dagger.mod.cli`, which loads the main object from the `dagger.mod` entry point
   and registers its type definitions.

The SDK source here is the dagger-io sdist of dagger.json's engineVersion with its version set to
0.0.0, as the engine bundles it. The engine's bundle also holds the SDK's `codegen` workspace member,
which the sdist lacks and which uv needs to read the SDK's project: a stand-in project of the same
name, version and dependency takes its place (it is a dev group, never installed by the runtime).
`python -m tests.dagger_runtime lock` refreshes .dagger/uv.lock.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = str(Path(sys.executable).parent / "uv")
CACHE = Path(os.environ.get("RUNNER_TEST_CACHE", Path.home() / ".cache" / "runner-tests"))
ALWAYS_IGNORED = (".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis")


def engine_version(root: Path = ROOT) -> str:
    return json.loads((root / "dagger.json").read_text())["engineVersion"].lstrip("v")


def sdk_source(version: str) -> Path:
    """The Python SDK source of an engine release (the dagger-io sdist), cached between runs."""
    folder = CACHE / "dagger-sdk" / version
    unpacked = folder / f"dagger_io-{version}"
    if not (unpacked / "pyproject.toml").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "dagger-io",
                        f"dagger-io=={version}", "-d", str(folder)], check=True)
        with tarfile.open(folder / f"dagger_io-{version}.tar.gz") as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later (Debian 12's 3.11.2 lacks it)
                tar.extractall(folder, filter="data")
            else:
                _check_members(tar, folder)
                tar.extractall(folder)
    return unpacked


def _check_members(tar: tarfile.TarFile, folder: Path) -> None:
    """What the "data" filter refuses: links, devices and paths that leave the folder."""
    root = folder.resolve()
    for m in tar.getmembers():
        if not (m.isfile() or m.isdir()) or not (root / m.name).resolve().is_relative_to(root):
            raise RuntimeError(f"unexpected member in the SDK archive: {m.name}")


def vendor_sdk(source_dir: Path, version: str) -> None:
    """<source>/sdk as the engine writes it: its SDK project, version 0.0.0."""
    target = source_dir / "sdk"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(sdk_source(version), target)
    pyproject = target / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = "[^"]+"', 'version = "0.0.0"', pyproject.read_text(), count=1))
    member = target / "codegen"
    if not (member / "pyproject.toml").is_file():
        (member / "src" / "codegen").mkdir(parents=True, exist_ok=True)
        (member / "src" / "codegen" / "__init__.py").write_text('"""Stand-in for the SDK\'s codegen member."""\n')
        (member / "pyproject.toml").write_text(
            '[project]\nname = "codegen"\nversion = "0.0.0"\nrequires-python = ">=3.10"\n'
            'dependencies = ["graphql-core>=3.2.3"]\n\n[build-system]\nrequires = ["uv_build>=0.8.4,<0.11.0"]\n'
            'build-backend = "uv_build"\n')


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    return any(fnmatch.fnmatch(p, pat) for p in parts for pat in ALWAYS_IGNORED) or any(
        fnmatch.fnmatch(rel, pat.strip("/")) or fnmatch.fnmatch(parts[-1], pat.strip("/")) for pat in patterns)


def module_context(root: Path, dest: Path) -> Path:
    """Copy what the engine loads of a local module into dest; returns the source folder in dest."""
    config = json.loads((root / "dagger.json").read_text())
    source = config.get("source", ".")
    wanted = [source, *config.get("include", [])]
    gitignore = [line.strip() for line in (root / ".gitignore").read_text().splitlines()
                 if line.strip() and not line.startswith("#")] if (root / ".gitignore").is_file() else []
    files = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "dagger.json", dest / "dagger.json")
    for rel in files:
        path = root / rel
        if not path.is_file() or _ignored(rel, gitignore):
            continue
        if not any(rel == w or rel.startswith(w.rstrip("/") + "/") or fnmatch.fnmatch(rel, w) for w in wanted):
            continue
        if rel.startswith(f"{source.rstrip('/')}/sdk/") or rel.startswith(f"{source.rstrip('/')}/.venv/"):
            continue  # the runtime drops these and writes its own sdk
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)
    return dest / source


def install(source_dir: Path, venv: Path, python: str = "python3.11") -> list[subprocess.CompletedProcess]:
    """The runtime's install commands, in its environment; returns each step's result (stops at a failure)."""
    env = {**os.environ, "UV_LINK_MODE": "copy", "UV_NATIVE_TLS": "1", "UV_PROJECT_ENVIRONMENT": str(venv),
           "UV_COMPILE_BYTECODE": "1", "UV_PYTHON": python, "UV_CACHE_DIR": str(CACHE / "uv")}
    env.pop("VIRTUAL_ENV", None)
    if (source_dir / "uv.lock").is_file():
        steps = [[UV, "lock"], [UV, "sync", "--no-dev"]]
    else:
        subprocess.run([UV, "venv", "-q", "--python", python, str(venv)], env=env, check=True)
        env["VIRTUAL_ENV"] = str(venv)
        steps = [[UV, "pip", "install", "-e", "./sdk", "-e", "."], [UV, "pip", "check"]]
    done = []
    for argv in steps:
        done.append(subprocess.run(argv, cwd=source_dir, env=env, capture_output=True, text=True))
        if done[-1].returncode != 0:
            break
    return done


_REGISTER = r"""
import json, sys, anyio
sys.path.insert(0, sys.argv[1])
from dagger.mod.cli import load_module
from tests.dagger_query import typedefs
print(json.dumps(anyio.run(typedefs, load_module())))
"""


def register(source_dir: Path, venv: Path, module: str = "runner") -> subprocess.CompletedProcess:
    """Load the main object through the runtime's entry point and register its type definitions (the
    final id() call, the only one that needs an engine, is left unsent)."""
    env = {**os.environ, "DAGGER_MODULE": module, "DAGGER_MAIN_OBJECT": module.capitalize(),
           "DAGGER_DEFAULT_PYTHON_PACKAGE": "runner_dagger"}
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    return subprocess.run([str(venv / "bin" / "python"), "-c", _REGISTER, str(ROOT)], cwd=source_dir, env=env,
                          capture_output=True, text=True)


def lock(root: Path = ROOT) -> None:
    """Refresh .dagger/uv.lock the way `dagger develop` would, with the engine's SDK vendored."""
    source = root / json.loads((root / "dagger.json").read_text())["source"]
    vendor_sdk(source, engine_version(root))
    subprocess.run([UV, "lock"], cwd=source, check=True, env={**os.environ, "UV_PYTHON": "python3.11"})


if __name__ == "__main__":
    if sys.argv[1:] != ["lock"]:
        sys.exit("usage: python -m tests.dagger_runtime lock")
    lock()
