"""Registry credentials, read once by the flow from whichever environment variable (or Dagger secret)
the face names, and kept out of every child process's environment from then on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from runner.model.errors import UserError

_TAKEN: dict[str, str] = {}


def take_from_env(variable: str) -> str:
    """A secret variable's value, removed from this process's environment when first read, so that no
    child process (docker, git, uv) inherits it, whatever the variable is called."""
    if variable in os.environ:
        _TAKEN[variable] = os.environ.pop(variable)
    return _TAKEN.get(variable, "")


async def plaintext(secret) -> str:
    """A Dagger secret's value, asked of the engine once, by the function's own process."""
    return await secret.plaintext()


@dataclass(frozen=True)
class Credentials:
    """A registry account: the user and the password (never printed: it is left out of repr)."""

    username: str = ""
    password: str = field(default="", repr=False)
    source: str = "REGISTRY_PASSWORD"  # where the password came from, for the error that names it
    handle: object = field(default=None, repr=False, compare=False)  # the engine's own secret, when it has one

    @classmethod
    def from_env(cls, username: str, variable: str) -> Credentials:
        return cls(username, take_from_env(variable), f"the environment variable {variable}")

    @classmethod
    async def from_secret(cls, username: str, secret) -> Credentials:
        """From a Dagger secret (anything with an async plaintext()); no secret gives no password."""
        return cls(username, await plaintext(secret) if secret is not None else "", "--password", secret)

    def __bool__(self) -> bool:
        return bool(self.username and self.password)

    def required(self, why: str = "") -> Credentials:
        if not self:
            raise UserError(f"registry credentials missing: set --username and {self.source}{why}")
        return self
