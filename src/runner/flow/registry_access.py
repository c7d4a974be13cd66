"""Where a release publishes: the registry's address, the image repository and the account, checked
once before anything changes, and the registry client made from them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.flow.credentials import Credentials
from runner.model.errors import UserError
from runner.model.naming import host_problem
from runner.release.publish import Repository

if TYPE_CHECKING:
    from runner.release.registry import Registry

NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class RegistryAccess:
    """A registry, the namespace/repository the images go to (empty: the project's) and the account."""

    address: str
    credentials: Credentials = field(default_factory=Credentials)
    namespace: str = ""
    repository: str = ""
    insecure: bool = False

    def repository_of(self, project) -> Repository:
        """The image repository, every part checked (the project names the defaults)."""
        if problem := host_problem(self.address):
            raise UserError("malformed registry address", value=self.address,
                            allowed=f"host[:port], e.g. docker.io: {problem}")
        ns, name = self.namespace or project.namespace, self.repository or project.repository
        for what, value in (("namespace", ns), ("repository", name)):
            if not NAME.fullmatch(value):
                raise UserError(f"malformed {what}", value=value,
                                allowed="lower-case letters, digits and . _ - between them, parts joined by /")
        return Repository(self.address, ns, name)

    def client(self) -> Registry:
        """The registry client (loaded only when a registry is used); $RUNNER_REGISTRY_TIMEOUT (seconds one request may take, answer included) and
        $RUNNER_REGISTRY_RETRY_SECONDS (how long transient faults are retried per request) tune its patience."""
        patience = {}
        for variable, name in (("RUNNER_REGISTRY_TIMEOUT", "timeout"), ("RUNNER_REGISTRY_RETRY_SECONDS", "retry_seconds")):
            if text := os.environ.get(variable, ""):
                if not re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,3})?", text) or not 0 < float(text) <= 3600:
                    raise UserError(f"malformed ${variable}", value=text, allowed="seconds, more than 0 and at most 3600")
                patience[name] = float(text)
        from runner.release.registry import Registry

        return Registry(self.address, self.credentials.username, self.credentials.password, insecure=self.insecure,
                        **patience)

    def docker_login(self) -> tuple[str, str, str]:
        return self.address, self.credentials.username, self.credentials.password


@dataclass(frozen=True)
class CacheAccess:
    """The build cache HOST/NAMESPACE/REPOSITORY and its account: the publishing one, else
    $REGISTRY_USERNAME and $REGISTRY_PASSWORD. It may live on another host than the images: each host
    is logged in to on its own."""

    host: str
    path: str
    credentials: Credentials

    @classmethod
    def parse(cls, ref: str, credentials: Credentials) -> CacheAccess:
        host, _, path = ref.partition("/")
        if host_problem(host) or not NAME.fullmatch(path):
            raise UserError("malformed --build-cache", value=ref, allowed="host[:port]/namespace/repository")
        username = credentials.username or os.environ.get("REGISTRY_USERNAME", "")
        return cls(host, path, Credentials(username, credentials.password, credentials.source))

    def client(self) -> Registry:
        from runner.release.registry import Registry

        return Registry(self.host, self.credentials.username, self.credentials.password)

    def docker_login(self) -> tuple[str, str, str]:
        return self.host, self.credentials.username, self.credentials.password


def split_reference(ref: str) -> tuple[str, str, str]:
    """(host, repository path, tag) of an image reference HOST/NAMESPACE/REPOSITORY:TAG."""
    from runner.release.registry import split_reference as split

    return split(ref)
