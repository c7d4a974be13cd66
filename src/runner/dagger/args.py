"""Argument types of the Dagger functions, written once: their docs are what `dagger call --help` shows."""

from __future__ import annotations

from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore

Source = Annotated[
    dagger.Directory,
    Doc("the project to build: matrix.yaml and pack/ (default: this checkout; pass another to build a fork)"),
    DefaultPath("/"),
    Ignore(["*", "!matrix.yaml", "!pack", "pack/**/__pycache__"]),
]
ServiceName = Annotated[str, Doc("only this service, e.g. vllm")]
BackendVersion = Annotated[str, Doc("backend version, exact or dotted prefix (12.8, 12)")]
ServiceVersion = Annotated[str, Doc("service version, exact or dotted prefix (0.14)")]
Variant = Annotated[str, Doc("backend variant, e.g. 910b")]
Platform = Annotated[str, Doc("only this platform, e.g. linux/arm64")]
IncludeDeprecated = Annotated[bool, Doc("include deprecated service versions")]
Registry = Annotated[str, Doc("registry host the engine can reach, e.g. docker.io; not 127.0.0.1, which is the "
                              "engine's own loopback: use the host's address for a registry on this machine")]
Username = Annotated[str, Doc("registry user")]
Password = Annotated[dagger.Secret, Doc("registry password or token, e.g. env://REGISTRY_PASSWORD")]
Namespace = Annotated[str, Doc("image namespace (default: the matrix's)")]
Repository = Annotated[str, Doc("image repository (default: the matrix's)")]
Catalog = Annotated[dagger.File | None, Doc("catalog to update (default: the packaged one)")]
Insecure = Annotated[bool, Doc("plain-HTTP registry (a local test registry)")]
Tag = Annotated[str, Doc("target tag, e.g. cuda12.8-vllm0.14.1")]
Concurrency = Annotated[int, Doc("images built and tested at once")]
Gpu = Annotated[bool, Doc("also run the backend's device check: NVIDIA only, with the engine started with "
                          "_EXPERIMENTAL_DAGGER_GPU_SUPPORT=1 on a host with the NVIDIA container toolkit; "
                          "skipped (not failed) where the engine has no device")]
