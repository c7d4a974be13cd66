"""What a local run is asked to do (its options) and what it answers, shared by the Release object
and the runs it starts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BuildOptions:
    """How a local build runs (the CLI's options of the same names)."""

    concurrency: int = 2
    gpu: bool = False
    no_smoke_cache: bool = False
    reproducible: bool = False
    build_cache: str = ""
    single_arch: bool = False
    run: str = ""
    source_url: str = ""
    revision: str = ""
    sign_key: str | None = None
    keyless: bool = False
    emulate: bool = False
    dry_run: bool = False


@dataclass
class Built:
    """What a build (and publish) did: the report, the images, what was published."""

    result: dict
    built: list = field(default_factory=list)
    pubs: list = field(default_factory=list)
