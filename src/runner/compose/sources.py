"""What a recipe downloads, declared once with its version in it: release archives and files
(`Download`) and git repositories at a tag or commit (`Git`). Steps render their fetch commands from
these declarations, so `runner plan`'s static checks can tell every URL in a script from a declared
one, and a mirror map can point any of them elsewhere."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from runner.compose.shell import word

CURL = "curl --retry 3 --retry-connrefused -fsSL"
_VERSIONISH = re.compile(r"^v?\d|\d+\.\d+|\$\{[A-Z0-9_]*VERSION\}")  # a release tag names a version
# Every source declared in this process, for the static check that finds undeclared URLs in scripts.
_DOWNLOADS: dict[tuple[str, str], "Download"] = {}
_REPOSITORIES: dict[str, set[str]] = {}
_GITS: dict[tuple[str, str], "Git"] = {}


@dataclass(frozen=True)
class Download:
    """A file fetched over HTTP(S); `url` holds `{version}` (and may hold `{arch}`, `{ARCH}`, ...,
    filled in the shell) so the version is part of every URL it gives."""

    name: str
    url: str
    version: str
    headers: tuple[str, ...] = ()  # e.g. a Referer a download host insists on

    def __post_init__(self) -> None:
        if "{version}" not in self.url:
            raise ValueError(f"download {self.name!r}: its URL must carry {{version}}: {self.url!r}")
        _DOWNLOADS[(self.url, self.version)] = self

    def pattern(self) -> re.Pattern:
        """Matches the URL as a script holds it: the version as declared, other fields as the shell
        fills them (`$(uname -m)`, `${arch}`)."""
        parts = re.split(r"(\{[a-zA-Z_]+\})", self.url.replace("{version}", self.version))
        return re.compile("".join(".+?" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts))

    def href(self, **fields: str) -> str:
        """The URL for this version; other {fields} are given here or left to the shell as $VARS."""
        url = self.url.replace("{version}", self.version)
        for key, value in fields.items():
            url = url.replace("{" + key + "}", value)
        return url

    def fetch(self, dest: str = "", **fields: str) -> str:
        """The shell that downloads it (to `dest`, or to stdout for a pipe)."""
        headers = "".join(f" -H {shlex.quote(h)}" for h in self.headers)
        out = f" -o {word(dest)}" if dest else ""
        return f"{CURL}{headers}{out} {word(self.href(**fields))}"


@dataclass(frozen=True)
class Git:
    """A git repository at a release tag or a commit."""

    name: str
    url: str
    ref: str  # a tag (v0.14.1) or a commit (9b680f42)
    branch_reason: str = ""  # why a branch is followed instead (a fork that publishes no tags)

    def __post_init__(self) -> None:
        if not self.ref:
            raise ValueError(f"repository {self.name!r}: give the tag or commit to check out")
        if not (self.is_commit or _VERSIONISH.search(self.ref) or self.branch_reason):
            raise ValueError(f"repository {self.name!r}: {self.ref!r} is neither a release tag nor a commit; "
                             "a branch moves under the build, so say why it is followed (branch_reason=...)")
        _REPOSITORIES.setdefault(self.url, set()).add(self.ref)
        _GITS[(self.url, self.ref)] = self

    @property
    def is_commit(self) -> bool:
        return bool(re.fullmatch(r"[0-9a-f]{7,40}", self.ref))

    def clone(self, dest: str, submodules: bool = True) -> str:
        """The shell that checks the repository out at its ref into `dest`."""
        sub = " --recursive --shallow-submodules" if submodules else ""
        url, into = word(self.url), word(dest)
        if self.is_commit:
            # `|| exit`: bash's -e ignores a failure anywhere in an && list but its last command, so a clone
            # that failed went on to the next line (cann9.0-a3-sglang0.5.20: no LMCache-Ascend, an empty
            # wheel folder, and a failure two steps later that did not name the clone)
            return (f"git clone{sub} {url} {into} && git -C {into} checkout {word(self.ref)}"
                    + (f" && git -C {into} submodule update --init --recursive" if submodules else "") + " || exit $?")
        return f"git clone --depth 1 --single-branch --branch {word(self.ref)}{sub} {url} {into}"


def github(owner_repo: str, ref: str, name: str = "") -> Git:
    return Git(name or owner_repo.rsplit("/", 1)[1].lower(), f"https://github.com/{owner_repo}.git", ref)


def declared_sources() -> list[Download | Git]:
    """Every Download and Git declared in this process (recipes declare theirs when loaded)."""
    return [*_DOWNLOADS.values(), *_GITS.values()]


def declared_url_at(script: str, pos: int) -> bool:
    """Whether the URL starting at `pos` in a script comes from a declared Download or Git."""
    if any(script.startswith(url, pos) for url in _REPOSITORIES):
        return True
    headers = {h.split(":", 1)[1].strip() for d in _DOWNLOADS.values() for h in d.headers if ":" in h}
    if any(script.startswith(h, pos) for h in headers if h):
        return True
    return any(d.pattern().match(script, pos) for d in _DOWNLOADS.values())


def declared_prefixes() -> list[str]:
    """`scheme://host/` of every declared Download and Git (what a source mirror stands in for)."""
    urls = [d.url for d in _DOWNLOADS.values()] + list(_REPOSITORIES)
    return sorted({"/".join(u.split("/", 3)[:3]) + "/" for u in urls if "://" in u})


def declared_repositories() -> dict[str, frozenset[str]]:
    """Every repository URL declared in this process, with its refs as declared (build arguments in them)."""
    return {url: frozenset(refs) for url, refs in _REPOSITORIES.items()}


def declared_download_urls() -> list[str]:
    """Every declared download's URL for its version (other fields left as {field})."""
    return sorted({d.url.replace("{version}", d.version) for d in _DOWNLOADS.values()})
