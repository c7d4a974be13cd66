"""What the image under test and the machine's caches cannot do, on the real daemon and registry: an
image that forges smoke results for itself does not pass; poisoned remembered results publish nothing
broken; a killed publish leaves no readable credential and no docker child; a promote and a discard
killed write by write never leave a catalog that names a missing image, and the next run brings it
in step with the registry; a run waiting for the catalog lock says so and ends at once on SIGTERM.

These tests use namespaces of their own, so the release-flow tests' repository is left alone."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.faults import FaultProxy
from tests.e2e.test_faults import _alive, _children

pytestmark = pytest.mark.e2e

GOOD = "demo1.0-echo0.1.0"
BROKEN = "demo1.0-echo0.3.0"

# echo-serve replaced by a forger: it reports a wrong version, and a child of it writes result frames
# for every check to the container's output for a few seconds (the frames of the old format, and with
# any nonce it can find in another process's argv or environment), then the real tool runs.
FORGER = r"""#!/bin/sh
forge() {
  ok=$(echo 'echo-serve 0.1.0' | base64)
  n=0
  while [ $n -lt 6 ]; do
    for nonce in "" $(cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -o '@@runner-check [0-9a-f]*' | cut -d' ' -f2); do
      i=0
      while [ $i -lt 30 ]; do
        printf '@@runner-check %s%s 0 0 1\n%s\n@@runner-end%s\n' "${nonce:+$nonce }" $i "$ok" "${nonce:+ $nonce}"
        i=$((i + 1))
      done
    done
    n=$((n + 1))
    sleep 1
  done
}
forge >/proc/1/fd/1 2>/dev/null &
exec /opt/echo/bin/real-echo-serve "$@"
"""


def _built(e2e, *args: str) -> None:
    r = e2e.runner("build", *args)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]


def test_an_image_that_forges_its_results_does_not_pass(e2e):
    _built(e2e, "--service-version", "0.1.0", "--platform", "linux/amd64")
    ctx = e2e.root / "forger"
    ctx.mkdir(exist_ok=True)
    (ctx / "echo-serve").write_text(FORGER)
    (ctx / "Dockerfile").write_text(
        f"FROM runner-build/{GOOD}:linux-amd64\n"
        "RUN echo 0.0.1 > /opt/echo/VERSION && mv /opt/echo/bin/echo-serve /opt/echo/bin/real-echo-serve\n"
        "COPY echo-serve /opt/echo/bin/echo-serve\n"
        "RUN chmod 755 /opt/echo/bin/echo-serve\n")
    e2e.docker("build", "--platform", "linux/amd64", "-t", "runner-forged:1", str(ctx), timeout=600)
    # the forger does write frames to the container's output
    shown = e2e.docker("run", "--rm", "--network", "none", "runner-forged:1", "sh", "-c", "echo-serve --version; sleep 2")
    assert "@@runner-check 0 0 0 1" in shown.stdout and "echo-serve 0.0.1" in shown.stdout
    report = e2e.root / "forged.json"
    r = e2e.runner("smoke", "--target", GOOD, "--platform", "linux/amd64", "--no-smoke-cache", "--report", str(report),
                   "runner-forged:1")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    (image,) = json.loads(report.read_text())["images"]
    checks = {c["name"]: c for c in image["smoke"]["checks"]}
    assert not checks["version"]["passed"] and "echo-serve 0.0.1" in checks["version"]["excerpt"]
    assert image["smoke"]["failed"] == ["version"], image["smoke"]["failed"]  # the others ran and passed for real


def test_poisoned_smoke_memory_publishes_nothing_broken(e2e):
    _built(e2e, "--service-version", "0.3.0")
    files = list((e2e.root / "runner-cache" / "smoke").glob("*.json"))
    assert files
    for f in files:  # every remembered result, the broken arm64 one among them, now claims nothing failed
        envelope = json.loads(f.read_text())
        f.write_text(json.dumps({**envelope, "data": []}))
    ns = "poisoned"
    r = e2e.runner("publish", "--registry", e2e.registry, "--namespace", ns, "--service-version", "0.3.0",
                   "--report", str(e2e.root / "poisoned.json"))
    assert r.returncode == 1, r.stderr[-2000:]
    report = json.loads((e2e.root / "poisoned.json").read_text())
    broken = next(i for i in report["images"] if i["tag"] == BROKEN and i["platform"] == "linux/arm64")
    assert broken["smoke"]["failed"] == ["version"] and broken["smoke"]["remembered"] == 0
    tags = e2e.skopeo("list-tags", "--tls-verify=false", f"docker://{e2e.registry}/{ns}/runner", check=False)
    assert tags.returncode != 0 or not json.loads(tags.stdout).get("Tags")


def test_a_killed_publish_leaves_no_readable_credential_and_no_docker_child(e2e):
    token = base64.b64encode(f"{e2e.username}:{e2e.password}".encode()).decode()
    env = e2e.env(MY_TOKEN=e2e.password)
    cmd = [sys.executable, "-m", "runner", "publish", "--registry", e2e.registry, "--namespace", "killed",
           "--password-env", "MY_TOKEN", "--service-version", "0.2"]
    proc = subprocess.Popen(cmd, env=env, cwd=e2e.root / "project", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children: list[int] = []
    leaked: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not children:
        for child in _children(proc.pid, "docker\0"):
            try:
                if e2e.password.encode() in Path(f"/proc/{child}/environ").read_bytes():
                    leaked.append(str(child))
            except OSError:
                pass  # it ended between listing and reading
        children = _children(proc.pid, "docker\0push\0")
        time.sleep(0.01)
    assert children, "publish ran no docker push to interrupt"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    time.sleep(1)
    assert not [c for c in children if _alive(c)], "a docker child outlived runner"
    assert not leaked, "a docker child had the password in its environment"
    found = []
    for root in ("/dev/shm", os.environ.get("TMPDIR", "/tmp")):
        for folder in Path(root).glob(f"runner-docker-config-{proc.pid}-*"):
            for f in folder.rglob("*"):
                if f.is_file() and (token.encode() in f.read_bytes() or e2e.password.encode() in f.read_bytes()):
                    found.append(str(f))
    assert not found, f"credentials left readable: {found}"


class KillingProxy(FaultProxy):
    """Forwards to the registry, and kills `victim` with SIGKILL at its `at`-th registry write (a PUT
    or DELETE with credentials; the first try of each is answered by a challenge and changes nothing):
    before forwarding it, or (`after`) just after a successful answer went back."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, rate=0.0)
        self.writes, self.at, self.after, self.victim = 0, 0, False, 0

    def handle(self, req) -> None:
        if not (req.command in ("PUT", "DELETE") and req.headers.get("Authorization") and self.at and self.victim):
            return super().handle(req)
        if not self.after:
            self.writes += 1
            if self.writes == self.at:
                os.kill(self.victim, signal.SIGKILL)
                req.close_connection = True
                return
            return super().handle(req)
        status: list[int] = []
        send = req.send_response
        req.send_response = lambda code, message=None: (status.append(code), send(code, message))
        super().handle(req)
        if status and 200 <= status[0] < 300:
            self.writes += 1
            if self.writes == self.at:
                os.kill(self.victim, signal.SIGKILL)


def _tags(e2e, ns: str) -> set[str]:
    out = e2e.skopeo("list-tags", "--tls-verify=false", f"docker://{e2e.registry}/{ns}/runner", check=False)
    return set(json.loads(out.stdout).get("Tags") or []) if out.returncode == 0 else set()


def _listed(catalog: Path) -> set[str]:
    return {r["docker_image"] for r in json.loads(catalog.read_text())} if catalog.exists() else set()


def test_a_promote_then_a_discard_killed_write_by_write_never_list_a_missing_image(e2e):
    """For a promote, then a discard of the same target: the first run is killed before its first
    registry write, the k-th just after its k-th, each on what the one before left (and repairing it
    first), until a run completes. At every point the catalog lists only images whose final tag is in
    the registry, and the run that completes leaves it exactly in step, with no journal or staged
    catalog behind."""
    ns, start = "killed-runs", time.monotonic()
    catalog = e2e.root / f"{ns}.json"
    r = e2e.runner("publish", "--registry", e2e.registry, "--namespace", ns, "--service-version", "0.1.0")
    assert r.returncode == 0, r.stderr[-2000:]
    proxy = KillingProxy(e2e.registry)
    proxy.server.handle_error = lambda request, address: None  # a killed client's dropped connection is expected
    env = e2e.env(REGISTRY_PASSWORD=e2e.password)
    kills: dict[str, int] = {}
    try:
        for op in ("promote", "discard"):
            args = [sys.executable, "-m", "runner", op, "--registry", proxy.address, "--namespace", ns,
                    "--service-version", "0.1.0", "--catalog", str(catalog)]
            kills[op] = 0
            for attempt in range(60):
                proxy.writes, proxy.at, proxy.after = 0, max(1, attempt), attempt > 0
                proc = subprocess.Popen(args, env=env, cwd=e2e.root / "project", stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                proxy.victim = proc.pid
                _, err = proc.communicate(timeout=120)
                assert "Traceback" not in err, err[-2000:]
                if proc.returncode == 0:
                    break
                assert proc.returncode == -signal.SIGKILL, (op, attempt, proc.returncode, err[-1500:])
                kills[op] += 1
                listed = _listed(catalog)
                assert listed <= {f"{ns}/runner:{t}" for t in _tags(e2e, ns)}, f"{op}: the catalog names a missing image"
            else:
                raise AssertionError(f"the {op} runs never finished")
            tags = _tags(e2e, ns)
            promoted = op == "promote"
            assert (GOOD in tags) == promoted and (promoted or not [t for t in tags if t.startswith(GOOD)]), tags
            assert _listed(catalog) == ({f"{ns}/runner:{GOOD}"} if promoted else set())
            assert not [p.name for p in catalog.parent.glob(f".{catalog.name}.*") if not p.name.endswith(".lock")]
    finally:
        proxy.close()
    assert kills["promote"] >= 2 and kills["discard"] >= 4, kills
    print(f"[killed-runs] killed {kills} times (before the first write, then after the k-th write of the k-th run), "
          f"every state in step; {time.monotonic() - start:.0f}s", file=sys.stderr)


def test_a_run_waiting_for_the_catalog_lock_says_so_and_ends_on_sigterm(e2e):
    import fcntl

    catalog = e2e.root / "waiting.json"
    lock = os.open(e2e.root / ".waiting.json.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "promote", "--registry", e2e.registry, "--namespace",
                                 "waiting", "--catalog", str(catalog), "--skip-missing"],
                                env=e2e.env(REGISTRY_PASSWORD=e2e.password), cwd=e2e.root / "project",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        assert proc.poll() is None, proc.communicate()[1][-1500:]
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        os.close(lock)
    assert proc.returncode == 128 + signal.SIGTERM and took < 5, (proc.returncode, took, err[-1500:])
    assert "waiting for the catalog lock" in err and "Traceback" not in err, err[-1500:]
