"""The provenance of one image: an in-toto Statement v1 whose predicate is SLSA provenance v1. It
names the recipe commit, the matrix target, the build arguments, every base image by digest, the
stage keys, the URL mirrors and build-cache substitutions, the builder (engine and version), the
smoke results and the SBOM (by digest, so a changed SBOM no longer matches the signed statement)."""

from __future__ import annotations

import datetime
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.compose.stages import Stage
from runner.model.targets import Target

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://github.com/gpustack/runner/buildtypes/image/v1"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def invocation() -> str:
    """This run's identity: the CI run's address where CI says it, else a fresh id."""
    env = os.environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        return (f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}/actions/runs/"
                f"{env['GITHUB_RUN_ID']}/attempts/{env.get('GITHUB_RUN_ATTEMPT', '1')}")
    return env.get("CI_JOB_URL") or f"urn:uuid:{uuid.uuid4()}"


@dataclass
class Facts:
    """What one platform's build was made of and how it went."""

    target: Target
    platform: str
    leaf: Stage
    image: str  # the single-arch reference it was pushed as
    digest: str
    build_info: Mapping[str, str]  # source, revision, created
    bases: Mapping[str, str]  # base image -> its digest (or image ID, for a local-only base)
    engine: str
    engine_version: str
    smoke: Sequence[Mapping[str, object]]  # CheckResult.as_dict() of each check
    sbom_digest: str
    mirrors: Mapping[str, str] = field(default_factory=dict)
    substitutions: Sequence[str] = ()  # stages taken from the build cache instead of built
    started: str = ""


def _digest(value: str) -> dict[str, str]:
    alg, _, hex_ = value.partition(":")
    return {alg: hex_} if hex_ else {"sha256": value}


def statement(f: Facts) -> dict:
    t, info = f.target, f.build_info
    repository = f.image.rpartition(":")[0]
    dependencies = []
    if info.get("revision"):
        dependencies.append({"uri": f"git+{info.get('source', '')}@{info['revision']}",
                             "digest": {"gitCommit": info["revision"]}, "name": "recipe"})
    dependencies += [{"uri": f"oci://{image}", "digest": _digest(digest), "name": "base image",
                      "annotations": {"platform": f.platform}} for image, digest in sorted(f.bases.items())]
    passed = all(bool(c.get("passed")) for c in f.smoke) and bool(f.smoke)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": _digest(f.digest)}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": {"uri": info.get("source", ""), "revision": info.get("revision", "")},
                    "target": {"tag": t.tag, "platform": f.platform, "backend": t.backend,
                               "backendVersion": t.backend_version, "variant": t.variant, "service": t.service,
                               "serviceVersion": t.service_version},
                    "image": f.image,
                },
                "internalParameters": {
                    "buildArgs": {f"BUILD_{k.upper()}": v for k, v in sorted(info.items())},
                    "stages": [{"kind": s.kind, "name": s.name, "key": s.key} for s in f.leaf.chain()],
                    "mirrors": dict(f.mirrors),
                    "substitutions": list(f.substitutions),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"{BUILD_TYPE.rsplit('/buildtypes', 1)[0]}/builders/{f.engine}",
                            "version": {"engine": f.engine, "engineVersion": f.engine_version,
                                        "runner": _runner_version()}},
                "metadata": {"invocationId": invocation(), "startedOn": f.started or now(), "finishedOn": now()},
                "byproducts": [
                    {"name": "sbom", "mediaType": "application/spdx+json", "digest": _digest(f.sbom_digest)},
                    {"name": "smoke", "mediaType": "application/json",
                     "annotations": {"passed": passed, "checks": {str(c["name"]): _outcome(c) for c in f.smoke}}},
                ],
            },
        },
    }


def _outcome(check: Mapping[str, object]) -> str:
    if check.get("skipped"):
        return "skipped"
    return ("passed" if check.get("passed") else "failed") + (" (remembered)" if check.get("cached") else "")


def dumps(stmt: dict) -> bytes:
    return json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()


def _runner_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runner")
    except PackageNotFoundError:
        return "0"


def sbom_digest(stmt: Mapping) -> str:
    """The SBOM digest a statement names ('' when it names none)."""
    for b in stmt.get("predicate", {}).get("runDetails", {}).get("byproducts", []):
        if b.get("name") == "sbom":
            return "sha256:" + (b.get("digest") or {}).get("sha256", "")
    return ""


def subjects(stmt: Mapping) -> set[str]:
    return {"sha256:" + s.get("digest", {}).get("sha256", "") for s in stmt.get("subject", [])}


def target(stmt: Mapping) -> dict:
    return stmt.get("predicate", {}).get("buildDefinition", {}).get("externalParameters", {}).get("target", {})
