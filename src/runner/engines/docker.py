"""The stage plan on a local Docker daemon's BuildKit, for build hosts that cannot run the Dagger
engine: Dockerfiles rendered from the plan, built one platform at a time with cache mounts, smoke
tests with `docker run`, pushes with `docker push`, indexes with `docker manifest`, and registry
operations with skopeo. Credentials live in a private DOCKER_CONFIG made for the run, never in argv."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from runner.compose.dockerfile import render
from runner.model.errors import UserError
from runner.release.pipeline import BuildError, Built
from runner.compose.plan import Leaf
from runner.release.registry import Skopeo
from runner.verify.smoke import Check

DOCKER = os.environ.get("RUNNER_DOCKER", "/usr/bin/docker")  # the client matching Debian's 20.10 daemon
_STEP = re.compile(r"^#(\d+) \[[^\]]*\] RUN ")
_STATE = re.compile(r"^#(\d+) (CACHED|DONE|ERROR)")


@dataclass
class StepCounts:
    """RUN steps BuildKit executed or found in its cache, over every build of a run."""

    executed: int = 0
    cached: int = 0

    def add(self, progress: str) -> None:
        steps: dict[str, str] = {}
        for line in progress.splitlines():
            if m := _STEP.match(line):
                steps[m[1]] = line.split("] ", 1)[1][:120]
            elif (m := _STATE.match(line)) and m[1] in steps:
                steps.pop(m[1])
                if m[2] == "CACHED":
                    self.cached += 1
                else:
                    self.executed += 1


class Docker:
    """The docker client, with a private config directory for registry credentials."""

    def __init__(self, binary: str = DOCKER) -> None:
        if not shutil.which(binary):
            raise UserError("docker client not found", value=binary,
                            hint="install Debian's docker.io (or set RUNNER_DOCKER to a client matching your daemon)")
        self.binary = binary
        self.config = tempfile.mkdtemp(prefix="runner-docker-config-")
        os.chmod(self.config, 0o700)
        self.env = {**os.environ, "DOCKER_CONFIG": self.config, "DOCKER_BUILDKIT": "1", "DOCKER_CLI_EXPERIMENTAL": "enabled"}

    @property
    def authfile(self) -> str:
        return str(Path(self.config) / "config.json")

    async def run(self, *argv: str, stdin: bytes | None = None, check: bool = True) -> tuple[int, str, str]:
        result = await anyio.run_process([self.binary, *argv], input=stdin, env=self.env, check=False)
        out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        if check and result.returncode != 0:
            raise BuildError(f"docker {argv[0]} failed: {err.strip()[-1500:] or out.strip()[-1500:]}")
        return result.returncode, out, err

    async def login(self, registry: str, username: str, password: str) -> None:
        """Store credentials in the private config (password through stdin, never argv)."""
        code, _, err = await self.run("login", "--username", username, "--password-stdin", registry,
                                      stdin=password.encode(), check=False)
        if code != 0:
            raise UserError(f"login to {registry} failed: {err.strip().splitlines()[-1] if err.strip() else code}")

    async def heredocs(self) -> bool:
        """Whether the daemon's built-in Dockerfile frontend has heredocs (Docker 23 and later)."""
        _, out, _ = await self.run("version", "--format", "{{.Server.Version}}")
        return int(out.strip().split(".")[0] or 0) >= 23

    def close(self) -> None:
        shutil.rmtree(self.config, ignore_errors=True)


class DockerBuilder:
    """The pipeline's Builder on a Docker daemon."""

    name = "docker"

    def __init__(self, docker: Docker, build_info: dict[str, str], form: str = "compat", network: str = "host") -> None:
        self.docker, self.build_info, self.form, self.network = docker, build_info, form, network
        self.counts = StepCounts()
        self.workdir = tempfile.mkdtemp(prefix="runner-build-")

    async def build(self, leaf: Leaf) -> tuple[str, str, int]:
        rendered = render(leaf.stage, self.form)
        ctx = Path(self.workdir) / f"{leaf.target.tag}-{leaf.platform.replace('/', '-')}"
        ctx.mkdir(parents=True, exist_ok=True)
        (ctx / "Dockerfile").write_text(rendered.text)
        image = f"runner-build/{leaf.target.tag}:{leaf.platform.replace('/', '-')}"
        args = [f"--build-arg=BUILD_{k.upper()}={v}" for k, v in self.build_info.items()]
        code, out, err = await self.docker.run(
            "build", "--platform", leaf.platform, "--network", self.network, "--progress", "plain",
            "--target", rendered.target, *args, "-t", image, "-f", str(ctx / "Dockerfile"), str(ctx), check=False)
        self.counts.add(err + out)
        if code != 0:
            failed = [line for line in (err + out).splitlines() if "ERROR" in line or "executor failed" in line]
            raise BuildError(f"{leaf.target.tag} on {leaf.platform}: {' | '.join(failed[-3:]) or err.strip()[-800:]}")
        _, info, _ = await self.docker.run("image", "inspect", "--format", "{{.Id}} {{.Size}}", image)
        image_id, size = info.split()
        return image, image_id, int(size)

    async def run_check(self, handle: str, check: Check) -> tuple[int, str]:
        code, out, err = await self.docker.run("run", "--rm", "--network", "none", handle, "sh", "-c", check.script,
                                               check=False)
        return code, out + err

    async def run_checks(self, handle: str, checks: Sequence[Check]) -> list[tuple[int, str]]:
        """All checks in one container (one `docker run` instead of one per check): each runs in its
        own subshell, its exit code and base64 output framed by markers."""
        script = "\n".join(
            f'( {c.script}\n) >/tmp/.runner-check 2>&1; echo "@@runner-check {i} $?"; base64 </tmp/.runner-check; echo "@@runner-end"'
            for i, c in enumerate(checks))
        code, out, err = await self.docker.run("run", "--rm", "--network", "none", handle, "sh", "-c", script, check=False)
        found = _parse_checks(out, len(checks))
        return [found.get(i, (code or 1, f"the check did not run: {err.strip()[-300:]}")) for i in range(len(checks))]

    async def entrypoint(self, handle: str) -> list[str]:
        import json

        _, out, _ = await self.docker.run("image", "inspect", "--format", "{{json .Config.Entrypoint}}", handle)
        return json.loads(out) or []

    async def push(self, handle: str, ref: str) -> str:
        await self.docker.run("tag", handle, ref)
        _, out, _ = await self.docker.run("push", ref)
        found = re.findall(r"digest: (sha256:[0-9a-f]{64})", out)
        if not found:
            raise BuildError(f"docker push {ref} printed no digest")
        return found[-1]

    async def push_index(self, ref: str, images: Sequence[Built]) -> str:
        repo = ref.rsplit(":", 1)[0]
        members = [f"{repo}@{b.digest}" for b in images]
        await self.docker.run("manifest", "rm", ref, check=False)  # a stale local list would be amended
        await self.docker.run("manifest", "create", "--insecure", ref, *members)
        _, out, _ = await self.docker.run("manifest", "push", "--purge", "--insecure", ref)
        found = re.findall(r"sha256:[0-9a-f]{64}", out)
        if not found:
            raise BuildError(f"docker manifest push {ref} printed no digest")
        return found[-1]

    async def run_device_check(self, handle: str, leaf: Leaf, pack: Path) -> tuple[int, str]:
        """The backend's device check through the profile's docker run line (devices, mounts, runtime)."""
        from runner.verify.profiles import load_profile, run_command

        profile = load_profile(pack, leaf.target.backend)
        argv = run_command(profile, handle, ["sh", "-c", profile.device_check])
        argv = [a for a in argv[1:] if a != "-it"]  # no terminal here; the docker client is our own
        code, out, err = await self.docker.run(*argv, check=False)
        return code, out + err

    async def from_ref(self, ref: str, platform: str) -> str:
        return ref  # docker manifest create takes references

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _parse_checks(out: str, n: int) -> dict[int, tuple[int, str]]:
    import base64

    results: dict[int, tuple[int, str]] = {}
    current: tuple[int, int] | None = None
    body: list[str] = []
    for line in out.splitlines():
        if line.startswith("@@runner-check "):
            _, index, code = line.split()
            current, body = (int(index), int(code)), []
        elif line == "@@runner-end" and current is not None:
            text = base64.b64decode("".join(body)).decode(errors="replace")
            results[current[0]] = (current[1], text)
            current = None
        elif current is not None:
            body.append(line)
    return results


def host_skopeo(authfile: str = "", tls_verify: bool = True) -> Skopeo:
    """Skopeo on this host; tombstone layouts go to a private temp dir per call."""
    binary = shutil.which("skopeo")
    if not binary:
        raise UserError("skopeo not found", hint="install Debian's skopeo package")

    async def run(argv: list[str], files: dict[str, bytes] | None = None) -> tuple[int, str, str]:
        with tempfile.TemporaryDirectory(prefix="runner-skopeo-") as tmp:
            if files:
                for path, data in files.items():
                    target = Path(tmp) / Path(path).relative_to("/tmp/runner-tombstone")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                argv = [a.replace("/tmp/runner-tombstone", tmp) for a in argv]
            result = await anyio.run_process([binary, *argv], check=False)
            return result.returncode, result.stdout.decode("utf-8", "surrogateescape"), result.stderr.decode(errors="replace")

    return Skopeo(run, tls_verify=tls_verify, authfile=authfile if authfile and Path(authfile).exists() else "")


@contextlib.contextmanager
def docker_session(binary: str = DOCKER):
    """A Docker client whose private credentials directory is removed afterwards."""
    docker = Docker(binary)
    try:
        yield docker
    finally:
        docker.close()
