"""The consumer contract: what GPUStack starts in our images, recorded from GPUStack's own code.

pack/_consumer/deployments.yaml declares the deployments (single device, tensor and pipeline
parallel over Ray, data parallel, multi-node without Ray, KV cache offload, omni, speculative
decoding, LoRA, ...) and the accelerator each backend's worker has. `runner consumer --write` starts
each deployment for every matrix target through GPUStack's backend classes and records, in
pack/_consumer/gpustack.json, every container gpustack-runtime's Docker deployer would create:
entrypoint, command, working folder, environment, files. Smoke checks and `runner run-command` read
that record; nothing here writes a command line by hand.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field

from runner.model.errors import UserError
from runner.model.marked_yaml import load_model
from runner.model.targets import Target

FOLDER = "_consumer"  # under pack/
SPEC = "deployments.yaml"
RECORD = "gpustack.json"
SERVICES = ("vllm", "sglang", "mindie", "voxbox")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lora(_Strict):
    name: str
    rank: int = Field(ge=1, description="the adapter's rank (its adapter_config.json `r`)")


class KVCache(_Strict):
    enabled: bool = True
    ram_size: int | None = Field(None, ge=1, description="GiB")
    ram_ratio: float | None = None
    chunk_size: int | None = Field(None, ge=1, description="tokens")


class Speculative(_Strict):
    enabled: bool = True
    algorithm: str = Field(pattern="^(eagle3|mtp|ngram)$")
    num_draft_tokens: int | None = Field(None, ge=1)
    ngram_min_match_length: int | None = Field(None, ge=1)
    ngram_max_match_length: int | None = Field(None, ge=1)


class ModelSettings(_Strict):
    """What the user sets on the model in GPUStack."""

    backend_parameters: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    extended_kv_cache: KVCache | None = None
    speculative: Speculative | None = None
    draft_model: bool = Field(False, description="speculative decoding with a draft model beside the model")
    loras: list[Lora] = Field(default_factory=list)


class KnownFailure(BaseModel):
    """A start of GPUStack's that an image below a service release cannot take, whatever the image holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    below: dict[str, str] = Field(min_length=1, description="service -> the first release that takes the start")
    says: str = Field(min_length=1, description="what the failure's output holds: any other failure still fails")
    why: str = Field(min_length=1)

    def applies_to(self, t: Target) -> bool:
        first = self.below.get(t.service)
        return first is not None and Version(t.service_version) < Version(first)


class Deployment(BaseModel):
    """One way GPUStack deploys a model (see deployments.yaml for the fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    services: list[str] = Field(min_length=1)
    gpus: int = Field(1, ge=1, le=4)
    followers: list[int] = Field(default_factory=list, max_length=2)
    follower: int | None = Field(None, ge=0)
    model: ModelSettings = Field(default_factory=ModelSettings)
    needs: list[str] = Field(default_factory=list, description="components the image must ship")
    known_failure: KnownFailure | None = None

    def applies_to(self, t: Target, components: frozenset[str]) -> bool:
        return t.service in self.services and set(self.needs) <= components


class Device(BaseModel):
    """A worker's accelerator as GPUStack reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str
    name: str
    arch_family: str | None = None
    compute_capability: str | None = None


class ConsumerSpec(BaseModel):
    """pack/_consumer/deployments.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: list[Deployment]
    devices: dict[str, Device]

    def device(self, t: Target) -> Device:
        key = f"{t.backend}-{t.variant}" if t.variant else t.backend
        if key not in self.devices:
            raise UserError(f"pack/{FOLDER}/{SPEC} names no device for {t.tag}", value=key, allowed=sorted(self.devices))
        return self.devices[key]


class Container(BaseModel):
    """One container as gpustack-runtime's Docker deployer would create it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    entrypoint: list[str] | None  # None: the image's ENTRYPOINT stays
    command: list[str] | None  # None: the image's CMD
    working_dir: str | None
    env: dict[str, str]
    privileged: bool
    files: dict[str, dict[str, str]] = Field(default_factory=dict, description="path -> mode, content")
    mounts: list[dict[str, Any]] = Field(default_factory=list, description="type, source, target, read_only")

    def argv(self, image_entrypoint: tuple[str, ...] = ()) -> list[str]:
        """The process the container starts: the entrypoint GPUStack sets, else the image's, and the command."""
        return [*(self.entrypoint if self.entrypoint is not None else image_entrypoint), *(self.command or [])]


class Started(BaseModel):
    """What GPUStack starts for one deployment on some targets (or why it cannot start it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[str]
    containers: list[Container] = Field(default_factory=list)
    workload: dict[str, Any] = Field(default_factory=dict)
    model_files: dict[str, str] = Field(default_factory=dict, description="the model folders GPUStack mounts")
    error: str = ""


class Record(BaseModel):
    """pack/_consumer/gpustack.json: generated by `runner consumer --write`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpustack: str
    gpustack_runtime: str
    leader: str = Field(description="the leading worker's address GPUStack filled in")
    followers: list[str] = Field(description="the further workers' addresses")
    deployments: dict[str, list[Started]]

    def for_target(self, tag: str) -> list[tuple[str, Started]]:
        """Every deployment recorded for a target, in the declared order."""
        return [(name, s) for name, started in self.deployments.items() for s in started if tag in s.targets]

    def dump(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=False) + "\n"


def load_spec(pack: Path) -> ConsumerSpec:
    spec = load_model(pack / FOLDER / SPEC, ConsumerSpec)
    names = [d.name for d in spec.deployments]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"pack/{FOLDER}/{SPEC}: deployments named twice", value=dupes[0])
    for d in spec.deployments:
        if bad := sorted(set(d.services) - set(SERVICES)):
            raise UserError(f"pack/{FOLDER}/{SPEC}: deployment {d.name} names an unknown service", value=bad[0],
                            allowed=SERVICES)
        if d.follower is not None and d.follower >= len(d.followers):
            raise UserError(f"pack/{FOLDER}/{SPEC}: deployment {d.name} records follower {d.follower}",
                            value=d.follower, hint=f"it has {len(d.followers)} followers")
    return spec


@lru_cache(maxsize=4)
def _load_record(path: Path, mtime_ns: int) -> Record:
    from runner.model.files import read_validated

    return read_validated(path, "consumer record", Record.model_validate_json, "consumer record",
                          "regenerate it with `runner consumer --write`")


def load_record(pack: Path) -> Record:
    """The committed record of what GPUStack starts (pack/_consumer/gpustack.json)."""
    path = pack / FOLDER / RECORD
    if not path.is_file():
        raise UserError("no record of what GPUStack starts", value=str(path), hint="run `runner consumer --write`")
    return _load_record(path, path.stat().st_mtime_ns)


def started_for(pack: Path, t: Target) -> list[tuple[str, Started]]:
    """What GPUStack starts for a target, deployment by deployment (none for a pack without a record)."""
    if not (pack / FOLDER / RECORD).is_file():
        return []
    return load_record(pack).for_target(t.tag)


def program_of(argv: list[str]) -> str:
    """Which service a container's process is, by its command words (after any tini --)."""
    words = [os.path.basename(a) for a in argv]
    pairs = set(zip(words, words[1:]))
    if ("vllm", "serve") in pairs:
        return "vllm"
    if ("ray", "start") in pairs:
        return "ray"
    if ("sglang", "serve") in pairs or ("-m", "sglang.launch_server") in pairs:
        return "sglang"
    if "vox-box" in words:
        return "voxbox"
    if words and words[0].startswith("gpustack-command-") and any(w.startswith("mindieservice_daemon") for w in words):
        return "mindie"
    return "unknown"


def probe_input(pack: Path, t: Target, entrypoint: tuple[str, ...], timeout: int = 600) -> dict:
    """What the consumer_lines probe runs for a target: each recorded container once (a start that
    several deployments share is run once and named for all of them)."""
    cases: list[dict] = []
    seen: dict[str, dict] = {}
    model_files: dict[str, str] = {}
    recorded = started_for(pack, t)
    declared = load_spec(pack).deployments if recorded and (pack / FOLDER / SPEC).is_file() else []
    known = {d.name: d.known_failure for d in declared if d.known_failure and d.known_failure.applies_to(t)}
    for name, started in recorded:
        if started.error:
            cases.append({"name": name, "argv": [], "env": {}, "cwd": None, "files": {}, "program": "none",
                          "problem": f"GPUStack cannot start it: {started.error}"})
            continue
        model_files.update(started.model_files)
        for c in started.containers:
            argv = c.argv(entrypoint)
            case = {"name": name if len(started.containers) == 1 else f"{name}/{c.name}", "argv": argv,
                    "env": c.env, "cwd": c.working_dir, "files": c.files, "program": program_of(argv),
                    "timeout": timeout}
            if (k := known.get(name)) is not None:
                case["known"] = {"says": k.says, "why": k.why}
            key = json.dumps([argv, c.env, c.working_dir, c.files], sort_keys=True)
            if key in seen:
                seen[key].setdefault("also", []).append(case["name"])
                continue
            seen[key] = case
            cases.append(case)
    return {"cases": cases, "model_files": model_files}
