"""Stand-in bases: when a target's vendor base image cannot be had here, a Debian image made with
debootstrap takes its place, with the paths and environment the recipe relies on from that base
(`pack/<backend>/standin.yaml`). The Debian root file system is kept under the cache folder, so
only the first rehearsal on a machine runs debootstrap."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.model.errors import UserError
from runner.model.files import cache_root
from runner.rehearse.rewrite import STANDIN_REPOSITORY
from runner.rehearse.substitutions import STANDIN_SUITE

@dataclass(frozen=True)
class StandinSpec:
    """What a backend's vendor base image gives the recipe, as far as a Debian image can carry it."""

    env: dict[str, str]
    paths: tuple[str, ...]  # folders the recipe expects ({version}: the base's backend release)
    cannot_carry: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()  # files the recipe reads (environment scripts), as stand-ins
    # folders of the vendor image that the package index publishes as a project's sdist at the image's
    # release (ROCm's /opt/rocm/share/amd_smi is AMD's `amdsmi`): (folder, project), carried from the index
    from_index: tuple[tuple[str, str], ...] = ()
    # the device compilers the vendor image has and the stand-in cannot: a step that stops where it calls
    # one (with no published artifact to stand for its build) is "not runnable here"
    compilers: tuple[str, ...] = ()


def standin_spec(pack: Path, backend: str, version: str = "") -> StandinSpec:
    """`pack/<backend>/standin.yaml` (an empty spec when the backend has none), `{version}` in its paths
    read as the backend release (a vendor image installs its toolkit in a versioned folder)."""
    path = pack / backend / "standin.yaml"
    if not path.is_file():
        return StandinSpec({}, (), ())
    try:
        data = yaml.safe_load(path.read_text()) or {}
        env = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
        files = tuple((str(k), str(v)) for k, v in (data.get("files") or {}).items())
        from_index = tuple((str(k), str(v)) for k, v in (data.get("from_index") or {}).items())
        paths = tuple(str(p).replace("{version}", version) for p in data.get("paths") or ())
        return StandinSpec(env, paths, tuple(map(str, data.get("cannot_carry") or ())),
                           files, from_index, tuple(map(str, data.get("compilers") or ())))
    except (yaml.YAMLError, AttributeError, TypeError) as e:
        raise UserError(f"{path}: not a stand-in spec ({e})",
                        hint="write env: {NAME: value}, paths: [...], cannot_carry: [...], "
                             "from_index: {FOLDER: PROJECT}, compilers: [...]") from None


# What every vendor base here has that a minimal Debian lacks: bash for the recipes' SHELL, python with
# pip (the runtime's build tools), certificates and curl for downloads before the runtime's apt step.
# python3-cairo: the runtime's software-properties-common pulls in Debian's python3-gi, whose metadata
# requires pycairo; on an Ubuntu base that sits in the OS's own python, which is not the image's, so
# `pip check` never sees it, while here the OS's python is the image's (declared: OS_PYTHON_PACKAGES).
PACKAGES = ("bash", "ca-certificates", "curl", "python3", "python3-pip", "python3-venv", "procps", "python3-cairo")
_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def rootfs_path(platform: str) -> Path:
    """Where the platform's Debian root file system tarball is kept (made once per cache)."""
    arch = _ARCH[platform]
    key = hashlib.sha256(f"{STANDIN_SUITE} {arch} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    return cache_root() / "rehearsal" / f"debian-{STANDIN_SUITE}-{arch}-{key}.tar"


def rootfs(platform: str) -> Path:
    """A Debian root file system tarball for the platform (debootstrap, cached)."""
    arch = _ARCH[platform]
    tar = rootfs_path(platform)
    folder = tar.parent
    if tar.exists():
        return tar
    if not shutil.which("debootstrap"):
        raise UserError("a stand-in base needs debootstrap, which is not installed",
                        hint="install Debian's debootstrap package (and run as root)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        root = Path(tmp) / "root"
        argv = ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={','.join(PACKAGES)}", STANDIN_SUITE, str(root)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"debootstrap could not make the {arch} stand-in: {(done.stderr or done.stdout).strip()[-600:]}",
                            hint="run as root on a machine that reaches Debian's archive")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / leftover).glob("*"):
                if f.is_file():
                    f.unlink()
        # the vendor images' python is not marked as managed by the distribution: pip installs into it
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        with tarfile.open(f"{tar}.part", "w") as out:
            out.add(root, arcname=".")
    Path(f"{tar}.part").rename(tar)
    return tar


# Where this machine keeps certificate authorities of its own (a network that re-signs TLS): a stand-in
# trusts them too, or nothing in it reaches the package index; uv reads SSL_CERT_FILE for them.
LOCAL_AUTHORITIES = Path("/usr/local/share/ca-certificates")


def local_authorities() -> list[Path]:
    return sorted(LOCAL_AUTHORITIES.glob("*.crt")) if LOCAL_AUTHORITIES.is_dir() else []


def dockerfile(spec: StandinSpec, authorities: bool = False, carried: Sequence[tuple[str, str]] = ()) -> str:
    """The stand-in on the Debian base: the vendor image's paths and environment (with `authorities`,
    this machine's certificate authorities from the build context's ca/ folder; with `carried`, each
    (folder, name) the build context's index/<name>/ holds, an sdist of the package index unpacked)."""
    lines = ["FROM scratch", "ADD rootfs.tar /"]
    if authorities:
        lines += ["COPY ca/ /usr/local/share/ca-certificates/", "RUN update-ca-certificates >/dev/null",
                  "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]
    if spec.paths:
        lines.append("RUN mkdir -p " + " ".join(json.dumps(p) for p in spec.paths))
    lines += [f"COPY {json.dumps(['index/' + name + '/', folder + '/'])}" for folder, name in carried]
    for path, content in spec.files:
        encoded = base64.b64encode(content.encode()).decode()
        lines.append(f"RUN mkdir -p {json.dumps(path.rsplit('/', 1)[0] or '/')} && echo {encoded} | base64 -d > {json.dumps(path)}")
    lines += [f"ENV {k}={json.dumps(v)}" for k, v in sorted(spec.env.items())]
    lines.append('CMD ["bash"]')
    return "\n".join(lines) + "\n"


def tag(backend: str, platform: str, spec: StandinSpec, authorities: Sequence[bytes] = (),
        carried: Sequence[tuple[str, str]] = ()) -> str:
    # the root file system's name holds its suite and package list: a stand-in of other packages is another
    # tag; so is one carrying another release's sdist (its name, project-version, is in the COPY line)
    text = (dockerfile(spec, bool(authorities), carried) + platform + rootfs_path(platform).name
            + "".join(a.decode(errors="replace") for a in authorities))
    return f"{STANDIN_REPOSITORY}{backend}-{_ARCH[platform]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
