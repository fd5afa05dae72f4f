"""What every provider adapter does, without I/O: read a provider request into
one message per recipient, rewrite it to carry only some of them, and answer
in the provider's own shape.

Recipients are numbered in the order the adapter reads them; every list of
indices below refers to that order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.errors import InputError
from gateway.jsonio import dumps
from gateway.model import Code, Decision, Message, Verdict


@dataclass(frozen=True, slots=True)
class Incoming:
    """A provider request as the sender made it, the gateway's own headers removed."""

    method: str
    path: str  # the raw path, with "?query" when there is one
    headers: tuple[tuple[str, str], ...]
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)  # from the path: account, project

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass(frozen=True, slots=True)
class Context:
    """What the gateway adds to every message of one request: from its headers
    (X-Message-Category, X-Message-Tags, X-Recipient-Timezone) or the config."""

    route: str
    sender: str
    category: str
    tags: tuple[str, ...] = ()
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One recipient's message, and where the recipient sits in the request."""

    message: Message
    where: str  # the provider's name for the field, e.g. personalizations.0.cc.1.email


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def with_headers(self, extra: Sequence[tuple[str, str]]) -> Answer:
        return Answer(self.status, self.headers + tuple(extra), self.body)


class Adapter(Protocol):
    name: str
    # The query parameters the provider takes on its path: none that carry a
    # part of the message, which the gateway would forward without judging.
    query: frozenset[str]

    def items(self, incoming: Incoming, context: Context) -> list[Item]:
        """Every recipient's message; raise InputError (with the provider's
        status) for a request the provider would refuse."""
        ...

    def dry_run(self, incoming: Incoming) -> bool:
        """Whether the provider only validates the request and delivers
        nothing (FCM's validate_only, SendGrid's sandbox mode); called once
        `items` took it."""
        ...

    def forward_body(
        self, incoming: Incoming, allowed: Sequence[int]
    ) -> tuple[bytes, dict[int, int]]:
        """The body that carries only the `allowed` recipients (the original
        bytes when all are allowed), and the allowed ones it could not carry
        mapped to the refused recipient that took them along."""
        ...

    def held_body(self, incoming: Incoming, index: int) -> bytes:
        """The body that sends to recipient `index` alone, later."""
        ...

    def held(self, incoming: Incoming, decisions: Sequence[Decision]) -> Answer:
        """Accepted and scheduled: nothing went out now, some recipients are held."""
        ...

    def refused(self, items: Sequence[Item], decisions: Sequence[Decision], capped: bool) -> Answer:
        """Nobody may be sent to; `capped` when every refusal is a frequency cap (429)."""
        ...

    def error(self, status: int, message: str) -> Answer:
        """Any other answer the gateway gives itself: bad input, 409, 502, 503, 504."""
        ...

    def bad_input(self, error: InputError, decision: Decision | None = None) -> Answer:
        """Input the gateway cannot take, in the provider's shape; `decision`:
        the recorded refusal of a recipient that is not a valid address, whose
        id the answer names as a refusal's does."""
        ...


def json_answer(status: int, data: Any) -> Answer:
    body = dumps(data)
    return Answer(status, (("Content-Type", "application/json"),), body)


def explain(decision: Decision) -> str:
    """The gateway's reasons as one line: codes, rule ids and what each saw."""
    reasons = "; ".join(f"{r.code.value} (rule {r.rule}): {r.message}" for r in decision.reasons)
    return f"refused by the compliance gateway, decision {decision.decision_id}: {reasons}"


def opted_out(decision: Decision) -> bool:
    return any(r.code is Code.OPTED_OUT for r in decision.reasons)


def refused_ones(decisions: Sequence[Decision]) -> list[tuple[int, Decision]]:
    return [(i, d) for i, d in enumerate(decisions) if d.decision is Verdict.REJECT]


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the body is not UTF-8 text") from None


def _no_constant(name: str) -> Any:
    raise InputError(f"the body is not valid JSON: {name} is not a JSON number")


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are each given once. A key given twice would be
    judged by one value while the bytes forwarded carry both, and which one
    the provider reads is its own choice."""
    data = dict(pairs)
    if len(data) != len(pairs):
        keys = [key for key, _ in pairs]
        twice = next(key for key in keys if keys.count(key) > 1)
        shown = twice.encode("utf-8", "backslashreplace").decode("utf-8")[:60]
        raise InputError(f"{shown}: given more than once", {shown: "given more than once"})
    return data


def loads(text: str) -> Any:
    """json.loads, with every way it refuses a text as an InputError: not only
    JSONDecodeError, but also RecursionError (it recurses once per level of
    nesting) and ValueError (an integer of more digits than int() converts).
    NaN and Infinity, which it takes and JSON does not, are refused too, and
    so is a key given twice in one object."""
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError("the body is not valid JSON: it is nested too deeply") from None
    except ValueError:
        raise InputError("the body is not valid JSON: a number has too many digits") from None


# The text is valid UTF-8, so only a \u escape can make a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """What is wrong with a text holding a lone surrogate, else None."""
    lone = _SURROGATE.search(text)
    if lone is None:
        return None
    return f"lone surrogate U+{ord(lone.group()):04X} at offset {lone.start()}"


# Deeper than any provider request needs, and well inside what the standard
# parser and orjson (254 levels) take: a held or trimmed request is parsed and
# written again deeper in the stack, where a document the parser took at the
# edge of the recursion limit would fail with a RecursionError.
MAX_DEPTH = 128


def _check_document(data: dict[str, Any], surrogates: bool) -> None:
    """InputError for a document nested more than MAX_DEPTH levels deep, or
    (with `surrogates`) naming a string or key that holds a lone surrogate:
    such text cannot be encoded as UTF-8, to be hashed, stored or sent. A
    surrogate pair is one character once parsed, so any surrogate left is lone.
    A loop, not recursion: the document may be nested as deep as the parser took."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict | list) and len(path) >= MAX_DEPTH:
            raise InputError(f"the body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append(((*path, key), key))
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, str(n)), item) for n, item in enumerate(value))
        elif surrogates and isinstance(value, str) and (problem := lone_surrogate(value)):
            # A key may hold the surrogate too: escaped, the field name can be sent back.
            where = ".".join(path).encode("utf-8", "backslashreplace").decode("utf-8")
            raise InputError(f"{where or 'body'}: {problem}", {where or "body": problem})


def decode_object(raw: bytes) -> dict[str, Any]:
    """A JSON object, or InputError naming where the JSON broke."""
    text = decode_text(raw)
    data = loads(text)
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object")
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    # Counting brackets bounds the depth cheaply: most bodies need no walk at all.
    if surrogates or text.count("[") + text.count("{") > MAX_DEPTH:
        _check_document(data, surrogates)
    return data


class SingleRecipient:
    """For providers whose request names one recipient: an allowed request goes
    out as it came, and a held one is kept as it came."""

    def forward_body(
        self, incoming: Incoming, allowed: Sequence[int]
    ) -> tuple[bytes, dict[int, int]]:
        return incoming.body, {}

    def held_body(self, incoming: Incoming, index: int) -> bytes:
        return incoming.body

    def dry_run(self, incoming: Incoming) -> bool:
        return False
