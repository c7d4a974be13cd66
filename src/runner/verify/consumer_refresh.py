"""`runner consumer`: start every declared deployment for every matrix target through GPUStack's own
code, and take gpustack-runtime's device profile of every backend (the workloads harness), and
compare with what pack/_consumer/ records, or write it anew."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.model.targets import Target
from runner.verify import consumer
from runner.verify.consumer_env import GPUSTACK, environment, run

PROFILES = "runtime-profiles.json"


@dataclass(frozen=True)
class Outcome:
    """One generated file: its path, the committed text and the text the consumer's code gives now."""

    path: Path
    committed: str
    generated: str

    @property
    def stale(self) -> bool:
        return self.committed != self.generated

    def diff(self, lines: int = 60) -> str:
        found = list(difflib.unified_diff(self.committed.splitlines(), self.generated.splitlines(),
                                          f"{self.path.name} (committed)", f"{self.path.name} (GPUStack now)", lineterm=""))
        more = f"\n... {len(found) - lines} more lines" if len(found) > lines else ""
        return "\n".join(found[:lines]) + more


def cases(project, spec: consumer.ConsumerSpec, components: Callable[[Target], frozenset[str]]) -> list[dict]:
    """The harness request's cases: each declared deployment of each target it applies to."""
    out = []
    for t in project.targets:
        shipped = components(t)
        device = spec.device(t)
        for d in spec.deployments:
            if not d.applies_to(t, shipped):
                continue
            platform = "linux/amd64" if "linux/amd64" in t.platforms else t.platforms[0]
            out.append({"key": f"{d.name}@{t.tag}", "target": t.tag, "service": t.service, "backend": t.backend,
                        "variant": t.variant, "service_version": t.service_version, "platform": platform,
                        "device": {**device.model_dump(exclude_none=True), "type": t.backend,
                                   "runtime_version": t.backend_version},
                        "deployment": d.model_dump(exclude_none=True)})
    return out


def record(project, spec: consumer.ConsumerSpec, asked: Sequence[dict], answer: dict) -> consumer.Record:
    """The answer grouped: per deployment, the targets GPUStack starts identically."""
    groups: dict[str, dict[str, dict]] = {d.name: {} for d in spec.deployments}
    for case in asked:
        result = answer["results"][case["key"]]
        if "error" not in result:
            wanted = project.image(case["target"])
            picked = {c.pop("image") for c in result["containers"]}
            if picked != {wanted}:
                result = {"error": f"GPUStack picked {', '.join(sorted(picked))} from our catalog, not {wanted}"}
        else:
            result = {"error": result["error"].splitlines()[0]}
        body = json.dumps(result, sort_keys=True)
        groups[case["deployment"]["name"]].setdefault(body, {"targets": [], **result})["targets"].append(case["target"])
    return consumer.Record(gpustack=answer["gpustack"], gpustack_runtime=answer["runtime"],
                           leader=answer["addresses"]["leader"], followers=answer["addresses"]["followers"],
                           deployments={name: [consumer.Started(**g) for g in found.values()]
                                        for name, found in groups.items() if found})


def generate(project, catalog: list[dict], components: Callable[[Target], frozenset[str]],
             env_root: Path | None = None) -> tuple[consumer.Record, dict]:
    """What GPUStack starts now, and gpustack-runtime's device profiles, from the pinned release."""
    spec = consumer.load_spec(project.pack_path)
    python = environment(project.pack_path, GPUSTACK, env_root)
    asked = cases(project, spec, components)
    answer = run(python, "workloads", {"catalog": catalog, "cases": asked, "profiles": sorted(project.services)})
    return record(project, spec, asked, answer), answer["profiles"]


def outcomes(pack: Path, generated: consumer.Record, profiles: dict) -> list[Outcome]:
    folder = pack / consumer.FOLDER
    texts = {folder / consumer.RECORD: generated.dump(), folder / PROFILES: json.dumps(profiles, indent=1) + "\n"}
    return [Outcome(p, p.read_text() if p.is_file() else "", text) for p, text in texts.items()]


def write(found: Sequence[Outcome]) -> None:
    from runner.model.files import write_atomic

    for o in found:
        if o.stale:
            write_atomic(o.path, o.generated, "consumer record")
