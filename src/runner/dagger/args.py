"""Argument types of the Dagger functions, written once: their docs are what `dagger call --help` shows."""

from __future__ import annotations

from typing import Annotated

import dagger
from dagger import Doc

ServiceName = Annotated[str, Doc("only this service, e.g. vllm")]
BackendVersion = Annotated[str, Doc("backend version, exact or dotted prefix (12.8, 12)")]
ServiceVersion = Annotated[str, Doc("service version, exact or dotted prefix (0.14)")]
Variant = Annotated[str, Doc("backend variant, e.g. 910b")]
Platform = Annotated[str, Doc("only this platform, e.g. linux/arm64")]
IncludeDeprecated = Annotated[bool, Doc("include deprecated service versions")]
Registry = Annotated[str, Doc("registry host, e.g. docker.io or 127.0.0.1:5000")]
Username = Annotated[str, Doc("registry user")]
Password = Annotated[dagger.Secret, Doc("registry password or token, e.g. env://REGISTRY_PASSWORD")]
Namespace = Annotated[str, Doc("image namespace")]
Repository = Annotated[str, Doc("image repository")]
Catalog = Annotated[dagger.File | None, Doc("catalog to update (default: the packaged one)")]
Insecure = Annotated[bool, Doc("plain HTTP registry (local tests)")]
Tag = Annotated[str, Doc("target tag, e.g. cuda12.8-vllm0.14.1")]
