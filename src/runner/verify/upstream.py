"""Upstream sources made from what the package index publishes: each declared git repository's
release tags rebuilt as local git repositories from the release's sdist (the real source of that
release), downloaded once into the cache. A ref the index cannot supply (a commit, a branch, a tag of
a project that publishes no sdist) is reported as not obtainable, with the reason.

Which repository is which project, and how its tags name versions, is declared once in UPSTREAMS.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.compose.requirements import expand
from runner.compose.stages import Run, Stage
from runner.model.errors import UserError
from runner.model.files import cache_root


@dataclass(frozen=True)
class Upstream:
    """A repository whose release tags are published on the index as sdists."""

    project: str  # the index's project name
    tag: str = "v{version}"  # how a release tag names the version
    subdir: str = ""  # where the sdist sits in the repository (SGLang publishes only python/)
    missing: str = ""  # what the repository holds that its sdist does not

    def version(self, ref: str) -> str:
        """The release a tag names ("" when the ref is not a tag of this form)."""
        head, _, tail = self.tag.partition("{version}")
        found = re.fullmatch(re.escape(head) + r"(\d[0-9A-Za-z.+!-]*)" + re.escape(tail), ref)
        return found[1] if found else ""


# repository URL (as recipes declare it) -> the project whose sdists hold its releases
UPSTREAMS: dict[str, Upstream] = {
    "https://github.com/vllm-project/vllm.git": Upstream("vllm"),
    "https://github.com/vllm-project/vllm-ascend.git": Upstream("vllm-ascend"),
    "https://github.com/vllm-project/vllm-omni.git": Upstream("vllm-omni"),
    "https://github.com/sgl-project/sglang.git": Upstream(
        "sglang", subdir="python",
        missing="only python/ is published: sgl-kernel, sgl-model-gateway (the router), docker/, README.md, "
                "LICENSE and the rest of the repository are not"),
    "https://github.com/LMCache/LMCache.git": Upstream("lmcache"),
    "https://github.com/Dao-AILab/flash-attention.git": Upstream("flash-attn"),
    "https://github.com/kvcache-ai/Mooncake.git": Upstream("mooncake-transfer-engine"),
    "https://github.com/ROCm/aiter.git": Upstream("amd-aiter"),
}
_SDIST = (".tar.gz", ".zip")
_CLONE = re.compile(r"git clone\b[^\n]*")
_QUOTED = r"""('[^']*'|"[^"]*"|[^\s'"&;|]+)"""


# the bare repositories made of sdists, under the sources folder (git/ held an earlier layout, which force-added
# the files a clone lacks; it is not read)
REPOS = "repos"


def sources_dir() -> Path:
    """Where sdists and the repositories made of them are kept: $RUNNER_SOURCES_DIR, else the cache's
    sources/ (they are large and never change, so a test run may share one folder across caches)."""
    return Path(os.environ.get("RUNNER_SOURCES_DIR") or cache_root() / "sources")


def index_url() -> str:
    """The index sdists come from: the one pip and uv are told to use, else pip's default."""
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if value := os.environ.get(var, "").strip():
            return value.rstrip("/") + "/"
    from pip._internal.models.index import PyPI  # the default index, named where pip names it

    return PyPI.simple_url.rstrip("/") + "/"


def _unquote(word: str) -> str:
    return word[1:-1] if len(word) > 1 and word[0] == word[-1] and word[0] in "'\"" else word


def clone_refs(script: str) -> list[tuple[str, str]]:
    """(repository URL, ref) for every clone line of a script, as rendered by Git.clone()."""
    found = []
    for line in _CLONE.findall(script):
        words = [_unquote(w) for w in re.findall(_QUOTED, line)]
        url = next((w for w in words if "://" in w), "")
        if "--branch" in words:
            ref = words[words.index("--branch") + 1]
        elif "checkout" in words:
            ref = words[words.index("checkout") + 1]
        else:
            continue
        if url:
            found.append((url, ref))
    return found


def wanted_refs(stages: Iterable[Stage]) -> dict[str, dict[str, list[str]]]:
    """Repository URL -> concrete ref -> the stages that clone it: every clone of the plan's scripts,
    its build arguments filled from the stage's (v${VLLM_VERSION} -> v0.14.1)."""
    out: dict[str, dict[str, list[str]]] = {}
    for stage in stages:
        args = {a.name: a.value for s in stage.chain() for a in s.args}
        for step in stage.steps:
            if isinstance(step, Run) and "git clone" in step.script:
                for url, ref in clone_refs(step.script):
                    out.setdefault(url, {}).setdefault(expand(ref, args), []).append(stage.id)
    return out


@dataclass
class Obtained:
    """One repository at one ref: mirrored from a release's sdist, or why not."""

    url: str
    ref: str
    status: str  # mirrored, not-obtainable
    reason: str = ""
    project: str = ""
    version: str = ""
    sdist: str = ""  # the file it was made from
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Upstreams:
    """Downloads sdists and keeps git repositories of them under `root` (the cache)."""

    def __init__(self, root: Path | None = None, index: str = "") -> None:
        self.root = root or sources_dir()
        self.index = index or index_url()
        self._files: dict[str, list[dict]] = {}

    def repo_dir(self, url: str) -> Path:
        """Where the bare repository for a URL lives: repos/<host>/<path>.git."""
        rest = re.sub(r"^[a-z]+://", "", url).rstrip("/")
        return self.root / REPOS / (rest if rest.endswith(".git") else rest + ".git")

    def obtain(self, url: str, ref: str) -> Obtained:
        """The repository at `ref`, made from the sdist of that release when it is not made yet."""
        up = UPSTREAMS.get(url)
        if up is None:
            return Obtained(url, ref, "not-obtainable", "no index project is declared for this repository "
                                                        "(runner.verify.upstream.UPSTREAMS)")
        version = up.version(ref)
        if not version:
            kind = "a commit" if re.fullmatch(r"[0-9a-f]{7,40}", ref) else f"not a release tag ({up.tag})"
            return Obtained(url, ref, "not-obtainable", f"{ref} is {kind}: the index publishes releases only",
                            up.project)
        done = Obtained(url, ref, "mirrored", project=up.project, version=version,
                        notes=[up.missing] if up.missing else [])
        repo = self.repo_dir(url)
        if self._has_tag(repo, ref):
            done.sdist = self._git(repo, "log", "-1", "--format=%s", ref).removeprefix("release ")
            return done
        try:
            sdist = self.sdist(up.project, version)
        except LookupError as e:
            done.status, done.reason = "not-obtainable", str(e)
            return done
        done.sdist = sdist.name
        self._commit(repo, ref, sdist, up.subdir)
        return done

    def sdist(self, project: str, version: str) -> Path:
        """The release's sdist in the cache, downloaded (and its hash checked) the first time."""
        from packaging.utils import canonicalize_name, parse_sdist_filename
        from packaging.version import Version

        files = [f for f in self.index_files(project) if f["filename"].endswith(_SDIST) and not f.get("yanked")]
        for f in files:
            try:
                name, found = parse_sdist_filename(f["filename"])
            except ValueError:
                continue
            if canonicalize_name(name) == canonicalize_name(project) and found == Version(version):
                return self._download(f)
        raise LookupError(f"the index has no sdist of {project} {version} "
                          f"({len(files)} sdists of {project} published)")

    def wheel(self, project: str, version: str, machine: str) -> tuple[Path, str]:
        """A manylinux wheel of `project` for a machine (x86_64, aarch64): of `version`, else of the nearest
        version of the same minor release; the wheel (downloaded once) and the version it is."""
        from packaging.utils import parse_wheel_filename
        from packaging.version import InvalidVersion, Version

        want = Version(version)
        found: dict[Version, dict] = {}
        for f in self.index_files(project):
            try:
                _, v, _, tags = parse_wheel_filename(f["filename"])
            except (ValueError, InvalidVersion):
                continue
            if (not f.get("yanked") and v.release[:2] == want.release[:2] and not v.is_prerelease
                    and any(t.platform.startswith("manylinux") and t.platform.endswith(machine) for t in tags)):
                found.setdefault(v, f)
        if not found:
            raise LookupError(f"the index has no manylinux {machine} wheel of {project} {want.major}.{want.minor}")
        best = min(found, key=lambda v: (abs(v.micro - want.micro), -v.micro))
        return self._download(found[best]), str(best)

    def index_files(self, project: str) -> list[dict]:
        """The index's files of a project (its JSON simple page), read once; LookupError where it cannot be."""
        if project not in self._files:
            import httpx

            try:
                r = httpx.get(f"{self.index}{project}/", timeout=60, follow_redirects=True,
                              headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            except httpx.HTTPError as e:
                raise LookupError(f"the index cannot be reached from here ({type(e).__name__})") from None
            if r.status_code == 404:
                raise LookupError(f"the index has no project {project}")
            if r.status_code != 200 or "json" not in r.headers.get("content-type", ""):
                raise LookupError(f"the index answered {r.status_code} for {project}")
            self._files[project] = r.json().get("files", [])
        return self._files[project]

    def _download(self, f: dict) -> Path:
        import httpx

        dest = self.root / "sdists" / f["filename"]
        want = f.get("hashes", {}).get("sha256", "")
        if dest.is_file() and (not want or _sha256(dest) == want):
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        url = f["url"] if "://" in f["url"] else self.index + f["url"]
        try:
            with httpx.stream("GET", url, timeout=300, follow_redirects=True) as r:
                r.raise_for_status()
                with tmp.open("wb") as out:
                    for chunk in r.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.HTTPError as e:
            tmp.unlink(missing_ok=True)
            raise LookupError(f"{f['filename']} could not be downloaded ({type(e).__name__})") from None
        if want and _sha256(tmp) != want:
            tmp.unlink()
            raise LookupError(f"{f['filename']} does not match the index's sha256")
        os.replace(tmp, dest)
        return dest

    def _commit(self, repo: Path, tag: str, sdist: Path, subdir: str) -> None:
        """A commit of the sdist's files (its top folder stripped, under `subdir`) tagged `tag`."""
        if not (repo / "HEAD").exists():
            repo.mkdir(parents=True, exist_ok=True)
            self._git(repo, "init", "--bare", "--quiet", "--initial-branch=main")
        with tempfile.TemporaryDirectory(prefix="runner-sdist-") as tmp:
            tree = unpack(sdist, Path(tmp) / "tree")
            work = Path(tmp) / "work"
            target = work / subdir if subdir else work
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tree, target)
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(work)}
            # what the sdist's own .gitignore ignores is left out, as a clone of the repository lacks it: a file
            # the build generates (vLLM's vllm/_version.py) tracked here made the clone dirty once built, and
            # setuptools-scm then named the release 0.14.2.dev0+g<commit>.d<date> (a pre-release)
            self._git(repo, "add", "--all", ".", env=env, cwd=work)
            tree_id = self._git(repo, "write-tree", env=env)
            commit = self._git(repo, "commit-tree", tree_id, "-m", f"release {sdist.name}", env=env)
        self._git(repo, "tag", "--force", tag, commit)
        self._git(repo, "update-ref", "refs/heads/main", commit)  # a plain clone checks out the latest made

    def _has_tag(self, repo: Path, tag: str) -> bool:
        return (repo / "HEAD").exists() and subprocess.run(
            ["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}"],
            capture_output=True).returncode == 0

    def files(self, url: str, ref: str) -> list[str]:
        """Every file path of the mirrored repository at `ref`."""
        return self._git(self.repo_dir(url), "ls-tree", "-r", "--name-only", ref).splitlines()

    def tree(self, url: str, ref: str, dest: Path, paths: Iterable[str] = ()) -> Path:
        """The mirrored repository's files at `ref` (only `paths`, when given), written to `dest`."""
        repo = self.repo_dir(url)
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(repo), "archive", "--format=tar", ref, "--", *paths],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return dest

    @staticmethod
    def _git(repo: Path, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        fixed = {"GIT_AUTHOR_NAME": "runner", "GIT_AUTHOR_EMAIL": "runner@localhost",
                 "GIT_COMMITTER_NAME": "runner", "GIT_COMMITTER_EMAIL": "runner@localhost",
                 "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}
        done = subprocess.run(["git", "--git-dir", str(repo), *argv], capture_output=True, text=True, cwd=cwd,
                              env={**os.environ, **fixed, **(env or {})})
        if done.returncode != 0:
            raise UserError(f"git {argv[0]} in the source mirror {repo} failed: {done.stderr.strip()}")
        return done.stdout.strip()


def unpack(sdist: Path, dest: Path) -> Path:
    """An sdist's files in `dest`, its single top folder (name-version/) stripped; no member may leave it."""
    dest.mkdir(parents=True)
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as z:
            for name in z.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    raise UserError(f"{sdist.name}: a member leaves the archive", value=name)
            z.extractall(dest)
    else:
        with tarfile.open(sdist) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(dest, filter="data")
            else:  # python releases before tar filters: refuse what would leave dest or is not a file
                for m in t.getmembers():
                    if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                        raise UserError(f"{sdist.name}: a member leaves the archive or is not a file", value=m.name)
                t.extractall(dest)
    tops = list(dest.iterdir())
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
