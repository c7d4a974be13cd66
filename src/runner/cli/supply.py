"""`runner verify|mirror|keygen`: what a published image proves and
where it came from, copies of it on mirrors, and the keys that sign it where Sigstore cannot reach."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.release import _run
from runner.model.errors import UserError


def verify(a: argparse.Namespace) -> int:
    return _run(_verify_mirrors if a.mirror else _verify, a)


def mirror(a: argparse.Namespace) -> int:
    return _run(_mirror, a)


def keygen(a: argparse.Namespace) -> int:
    from runner.release.signing import keygen as make

    private, public = make(a.folder)
    print(f"wrote {private} (keep it secret: CI gets it as $RUNNER_SIGNING_KEY) and {public} "
          f"(give it to `runner verify --key`)", file=sys.stderr)
    return 0


def _registry(host: str, username: str, password_env: str, insecure: bool):
    from runner.flow.credentials import Credentials
    from runner.flow.registry_access import RegistryAccess

    return RegistryAccess(host, Credentials.from_env(username, password_env), insecure=insecure).client()


def _target_tags(a: argparse.Namespace) -> tuple[object, list[str]]:
    from runner.cli.inspect import selected_targets

    project, targets = selected_targets(a)
    return project, [t.tag for t in targets]


def _place(value: str, what: str) -> tuple[str, str]:
    from runner.flow.registry_access import NAME as _NAME
    from runner.model.naming import host_problem

    host, _, namespace = value.partition("/")
    if host_problem(host) or not _NAME.fullmatch(namespace):
        raise UserError(f"malformed {what}", value=value, allowed="host[:port]/namespace, e.g. quay.io/gpustack")
    return host, namespace


async def _verify(a: argparse.Namespace) -> int:
    from runner.release.ledger import path_for, pinned
    from runner.flow.registry_access import split_reference
    from runner.release.signing import Trust
    from runner.release.verification import Rejected, verify_image

    if not a.images:
        raise UserError("name the images to verify (HOST/NAMESPACE/REPOSITORY:TAG), or check mirrors with --mirror")
    trust = Trust.from_args(a.key, a.identity, a.issuer)
    results, failures = [], []
    for ref in a.images:
        host, repo, tag = split_reference(ref)
        pin = pinned(path_for(a.catalog), f"{repo}:{tag}") if a.catalog else ""
        async with _registry(host, a.username, a.password_env, a.insecure) as reg:
            try:
                proven = await verify_image(reg, repo, tag, trust, pin)
            except Rejected as e:
                failures.append(str(e))
                continue
        results.append({"image": ref, "platforms": [p.as_dict() for p in proven]})
        if a.format == "table":
            for p in proven:
                print(f"verified {ref} {p.platform} {p.digest[:19]}: signed by {p.signer}, revision "
                      f"{p.revision[:12] or '?'}, smoke {'passed' if p.smoke_passed else 'NOT passed'}, SBOM "
                      + ", ".join(f"{n} {k}" for k, n in p.packages.items()))
    if a.format == "json":
        print(json.dumps({"verified": results, "rejected": failures}, indent=1))
    for f in failures:
        print(f"runner: rejected: {f}", file=sys.stderr)
    return 2 if failures else 0


async def _verify_mirrors(a: argparse.Namespace) -> int:
    from contextlib import AsyncExitStack

    from runner.release.verification import check_mirrors

    if not a.registry:
        raise UserError("--mirror checks against a source: give --registry (and --namespace if not the matrix's)")
    project, tags = _target_tags(a)
    places = [_place(m, "--mirror") for m in a.mirror]
    repo = f"{a.namespace or project.namespace}/{a.repository or project.repository}"
    async with AsyncExitStack() as stack:
        source = await stack.enter_async_context(_registry(a.registry, a.username, a.password_env, a.insecure))
        mirrors = [(await stack.enter_async_context(_registry(h, a.mirror_username, a.mirror_password_env, a.insecure)),
                    f"{ns}/{a.repository or project.repository}") for h, ns in places]
        rows = await check_mirrors(source, repo, mirrors, tags)
    bad = [r for r in rows if not r.ok]
    if a.format == "json":
        print(json.dumps([r.as_dict() for r in rows], indent=1))
    else:
        for r in rows:
            state = "; ".join(f"{m}: {v}" for m, v in r.mirrors.items())
            print(f"{'ok  ' if r.ok else 'BAD '} {r.tag} {r.source[:19] or '(not on the source)'}  {state}")
    for r in bad:
        what = [f"{m} {v}" for m, v in r.mirrors.items() if v != "same"] or ["not on the source registry"]
        print(f"runner: rejected: {r.tag}: {'; '.join(what)}", file=sys.stderr)
    return 2 if bad else 0


async def _mirror(a: argparse.Namespace) -> int:
    from runner.release.mirror import Copier, mirror as copy

    if not a.registry:
        raise UserError("mirror copies from a source: give --registry (and --namespace if not the matrix's)")
    project, tags = _target_tags(a)
    host, namespace = _place(a.to, "--to")
    name = a.repository or project.repository
    source = _registry(a.registry, a.username, a.password_env, a.insecure)
    dest = _registry(host, a.mirror_username, a.mirror_password_env, a.insecure)
    async with source, dest:
        await dest.login()
        copied = await copy(Copier(source, f"{a.namespace or project.namespace}/{name}", dest, f"{namespace}/{name}"), tags)
    print(json.dumps([vars(c) for c in copied], indent=1))
    missing = [c for c in copied if c.skipped]
    for c in missing:
        print(f"runner: {c.tag}: not copied: {c.skipped}", file=sys.stderr)
    return 1 if missing else 0
