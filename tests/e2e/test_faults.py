"""Faults, signals and concurrency against the real e2e registry: a proxy that resets connections and
answers 500, 503, 429 or slowly; SIGTERM in the middle of a publish; two promotes at once on one
catalog; a registry that refuses DELETE. Publish and promote either finish with the right digests or
stop with nothing half-done and a clear error, and a rerun converges.

These tests use namespaces of their own, so the release-flow tests' repository is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import infra
from tests.e2e.faults import FaultProxy

pytestmark = pytest.mark.e2e

GOOD = ("demo1.0-echo0.1.0", "demo1.0-echo0.2.0")


def _tags(e, namespace: str, registry: str | None = None) -> set[str]:
    out = e.skopeo("list-tags", "--tls-verify=false", f"docker://{registry or e.registry}/{namespace}/runner", check=False)
    return set(json.loads(out.stdout).get("Tags") or []) if out.returncode == 0 else set()


def _index(e, namespace: str, tag: str) -> tuple[dict, str]:
    import hashlib

    out = e.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{e.registry}/{namespace}/runner:{tag}")
    return json.loads(out.stdout), "sha256:" + hashlib.sha256(out.stdout.encode()).hexdigest()


def _nothing_half_done(e, namespace: str) -> None:
    """Every -dev index names both platforms, and each manifest it names is in the registry."""
    tags = _tags(e, namespace)
    for dev in (t for t in tags if t.endswith("-dev")):
        index, _ = _index(e, namespace, dev)
        platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"])
        assert platforms == ["linux/amd64", "linux/arm64"], (dev, platforms)
        for m in index["manifests"]:
            e.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{e.registry}/{namespace}/runner@{m['digest']}")


def test_publish_and_promote_through_a_faulty_registry_finish_or_stop_cleanly_and_converge(e2e):
    proxy = FaultProxy(e2e.registry, rate=0.2)
    ns, catalog = "faults", e2e.root / "faults-catalog.json"
    reg = ["--registry", proxy.address, "--namespace", ns, "--service-version", "0.1", "--catalog", str(catalog)]
    runs = []
    try:
        for attempt in range(4):
            r = e2e.runner("publish", *reg[:-2], "--report", str(e2e.root / f"faults-publish-{attempt}.json"))
            runs.append(("publish", r.returncode, r.stderr.strip().splitlines()[-1][:300] if r.returncode else ""))
            assert "Traceback" not in r.stderr, r.stderr[-2000:]
            assert r.returncode in (0, 3), f"a registry fault is an infrastructure error (3): {r.stderr[-1500:]}"
            _nothing_half_done(e2e, ns)
            if r.returncode == 0:
                break
            assert r.stderr.strip(), "a failed publish says why"
        assert r.returncode == 0, f"publish did not converge: {runs}\n{r.stderr[-2000:]}"
        report = json.loads((e2e.root / f"faults-publish-{attempt}.json").read_text())
        for attempt in range(4):
            p = e2e.runner("promote", *reg)
            runs.append(("promote", p.returncode, p.stderr.strip().splitlines()[-1][:300] if p.returncode else ""))
            assert "Traceback" not in p.stderr, p.stderr[-2000:]
            if p.returncode == 0:
                break
        assert p.returncode == 0, f"promote did not converge: {runs}\n{p.stderr[-2000:]}"
    finally:
        proxy.close()
    print(f"[faults] injected {dict(proxy.injected)}, forwarded {proxy.forwarded}; runs {runs}; "
          f"retries recorded in the last publish report: {len(report.get('registry_retries', []))}", file=sys.stderr)
    assert sum(proxy.injected.values()) > 0
    published = {p["tag"]: p for p in report["published"]}
    for tag in GOOD[:1]:
        _, dev = _index(e2e, ns, f"{tag}-dev")
        _, final = _index(e2e, ns, tag)
        assert dev == final == published[tag]["digest"]
    records = json.loads(catalog.read_text())
    assert {r["docker_image"] for r in records} == {f"{ns}/runner:{GOOD[0]}"}


def test_sigterm_during_publish_leaves_no_credential_and_no_child(e2e):
    env = e2e.env(REGISTRY_PASSWORD=e2e.password)
    cmd = [sys.executable, "-m", "runner", "publish", "--registry", e2e.registry, "--namespace", "signals",
           "--service-version", "0.2"]
    proc = subprocess.Popen(cmd, env=env, cwd=e2e.root / "project", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    children: list[int] = []
    # interrupt a push (builds of unchanged images do not reach docker build, inspects are brief)
    while time.monotonic() < deadline and proc.poll() is None and not children:
        children = _children(proc.pid, "docker\0push\0")
        time.sleep(0.02)
    assert children, "publish ran no docker push to interrupt"
    configs = _private_configs(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "stopped by SIGTERM" in err, err[-2000:]
    time.sleep(1)
    assert not [c for c in children if Path(f"/proc/{c}").exists() and _alive(c)], "a docker child outlived runner"
    assert configs and not [c for c in configs if c.exists()], "a credential folder was left behind"
    leftovers = [p for root in ("/dev/shm", os.environ.get("TMPDIR", "/tmp")) for p in Path(root).glob("runner-docker-config-*")
                 if p.name.endswith(f"-{proc.pid}") or str(proc.pid) in p.name]
    assert not leftovers


def _children(pid: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == pid and name in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def _private_configs(pid: int) -> list[Path]:
    """The private DOCKER_CONFIG folders runner made for this process (named in its children's environ)."""
    found = set()
    for child in _children(pid, "docker"):
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        found |= {Path(v.split(b"=", 1)[1].decode()) for v in env if v.startswith(b"DOCKER_CONFIG=")}
    return sorted(found)


def test_two_promotes_at_once_lose_no_catalog_record(e2e):
    ns, catalog = "together", e2e.root / "together-catalog.json"
    r = e2e.runner("publish", "--registry", e2e.registry, "--namespace", ns, "--service-version", "0.1")
    r2 = e2e.runner("publish", "--registry", e2e.registry, "--namespace", ns, "--service-version", "0.2")
    assert r.returncode == r2.returncode == 0, (r.stderr + r2.stderr)[-2000:]
    proxy = FaultProxy(e2e.registry, rate=0.5, faults=("slow",), slow_seconds=0.5)  # long enough to overlap
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "runner", "promote", "--registry", proxy.address, "--namespace",
                                   ns, "--service-version", v, "--catalog", str(catalog)],
                                  env=e2e.env(REGISTRY_PASSWORD=e2e.password), cwd=e2e.root / "project",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in ("0.1", "0.2")]
        results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    finally:
        proxy.close()
    assert [code for _, _, code in results] == [0, 0], [err[-800:] for _, err, _ in results]
    images = {r["docker_image"] for r in json.loads(catalog.read_text())}
    assert images == {f"{ns}/runner:{t}" for t in GOOD}


def test_a_registry_that_refuses_delete_is_left_as_it_was(e2e):
    refusing = infra.start_registry(delete=False, username=e2e.username, password=e2e.password)
    try:
        ns, catalog = "keep", e2e.root / "keep-catalog.json"
        reg = ["--registry", refusing.registry, "--namespace", ns, "--catalog", str(catalog)]
        assert e2e.runner("publish", "--registry", refusing.registry, "--namespace", ns, "--service-version", "0.1").returncode == 0
        assert e2e.runner("promote", *reg, "--service-version", "0.1").returncode == 0
        before_tags = _tags(e2e, ns, refusing.registry)
        before_catalog = catalog.read_text()
        r = e2e.runner("discard", *reg, "--service-version", "0.1")
        assert r.returncode == 1 and "refuses to delete" in r.stderr and "no tag was touched" in r.stderr, r.stderr[-1500:]
        assert "Traceback" not in r.stderr
        assert _tags(e2e, ns, refusing.registry) == before_tags and catalog.read_text() == before_catalog
        r = e2e.runner("prune", "--registry", refusing.registry, "--namespace", ns, "--intermediates")
        assert r.returncode == 1 and _tags(e2e, ns, refusing.registry) == before_tags
    finally:
        infra.stop(refusing)
