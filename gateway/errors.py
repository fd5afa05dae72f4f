"""The gateway's own exceptions. Routes and the CLI handle only these.

GatewayError
├── ConfigError            the configuration file or environment is wrong
├── PolicyError            a policy bundle failed validation (carries every problem)
├── InputError             a request or message is malformed (carries field errors)
│   └── InvalidRecipient   the recipient is not a valid number or address
├── ConflictError          an idempotency key was reused with a different message
├── Forbidden              the caller's key may not act for this sender
├── StoreUnavailable       the state store cannot be reached (fail closed)
├── AuditUnavailable       the audit trail cannot be written (fail closed)
├── DataDirLocked          another process owns the data folder
└── UpstreamError          the upstream gave no answer
    ├── UpstreamUnreachable    nothing was sent (connection refused)
    └── UpstreamTimeout        the request went out, no answer came in time
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
Caught = tuple[type[BaseException], ...]
Make = Callable[[BaseException], "GatewayError"]


def one_line(text: str) -> str:
    """`text` kept to one line: a line break or another unprintable character
    in a value it quotes (a key, a path, a case name) is shown escaped."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    pass


class PolicyError(GatewayError):
    """A bundle was refused; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class InputError(GatewayError):
    """Malformed input; `fields` maps a field path to what is wrong with it.
    `unparsed` is (channel, address as given) when the one thing wrong is the
    recipient: the refusal is then a decision, recorded like any other."""

    unparsed: tuple[str, str] | None = None

    def __init__(self, message: str, fields: dict[str, str] | None = None, status: int = 400):
        self.fields = fields or {}
        self.status = status
        super().__init__(message)


class InvalidRecipient(InputError):
    pass


class ConflictError(GatewayError):
    pass


class Forbidden(GatewayError):
    """The request's API key is bound to other senders (403)."""


class Unavailable(GatewayError):
    """The store or the trail cannot be reached: nothing was sent.

    `decision_id` names the refusal's record, when the trail could keep one;
    `decision` is the refusal as the native API shows it (section 5's JSON),
    when the message got that far."""

    decision_id: str | None = None
    decision: dict[str, Any] | None = None


class StoreUnavailable(Unavailable):
    """`unsent`: the store surely never received the operation (the connection
    was refused or broke before it was written): there is nothing to undo."""

    unsent: bool = False


class AuditUnavailable(Unavailable):
    pass


class DataDirLocked(GatewayError):
    pass


class UpstreamError(GatewayError):
    pass


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


def translated(
    caught: Caught, make: Make
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """A decorator for a backend's async operations: a driver error of the
    kinds `caught` leaves as `make(error)`, so callers see only our types."""

    def decorate(operation: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(operation)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await operation(*args, **kwargs)
            except caught as exc:
                raise make(exc) from exc

        return wrapper

    return decorate


def translated_sync(caught: Caught, make: Make) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`translated`, for a backend's synchronous operations."""

    def decorate(operation: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(operation)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return operation(*args, **kwargs)
            except caught as exc:
                raise make(exc) from exc

        return wrapper

    return decorate
