"""Errors both faces report without a traceback: UserError (a mistake in the input or request; it names
where, what and what is allowed; exit code 2), Failed (the job ran and part of it failed: a build,
a smoke check, a registry's refusal; the message lists what; exit code 1) and InfrastructureError (a
registry or network that kept failing past the retries, or answered beyond any limit: nobody's input
was wrong and nothing failed its tests; run again later; exit code 3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    """A place in an input file (line and column are 1-based)."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class UserError(Exception):
    """A mistake in the user's input or request, reported without a traceback (exit code 2)."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        where: Where | None = None,
        value: object = None,
        allowed: Iterable[str] | str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.where = where
        self.value = value
        self.allowed = allowed if isinstance(allowed, str) or allowed is None else ", ".join(allowed)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.value is not None:
            text += f": {self.value!r}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        if self.hint:
            text += f"; {self.hint}"
        return text


class ErrorList(UserError):
    """Several user errors found in one pass, reported together."""

    def __init__(self, errors: list[UserError]) -> None:
        self.errors = errors
        UserError.__init__(self, "\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class Failed(Exception):
    """The job ran and did not fully succeed; the message says what failed and what to do (exit 1)."""

    exit_code = 1


class InfrastructureError(Failed):
    """A fault on the way, not in the input or the images: a registry unreachable, overloaded or broken
    for longer than the retries, or no container engine to build on (exit code 3). `advice` says what
    to do about it; it never blames the recipe."""

    exit_code = 3

    def __init__(self, message: str, advice: str = "run the same command again when the registry answers") -> None:
        self.advice = advice
        super().__init__(message)


def closest(value: str, allowed: Iterable[str]) -> str | None:
    """The allowed name nearest to a misspelt one, for a 'did you mean' hint."""
    import difflib

    found = difflib.get_close_matches(value, list(allowed), n=1)
    return f"did you mean {found[0]!r}?" if found else None


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first error a task group collected, unwrapped from any nesting: what to report."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found
