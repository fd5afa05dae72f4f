"""`gateway policy test`: the cases of `*.test.yaml`, each against a fresh in-memory state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from gateway import engine
from gateway.adapters.native import EARLIEST_AT, LATEST_AT, NativeMessage, field_errors, to_message
from gateway.audit.memory import MemoryTrail
from gateway.clock import FixedClock
from gateway.errors import InputError, InvalidRecipient, one_line
from gateway.model import Code, Reason
from gateway.policy.bundle import Bundle
from gateway.policy.loader import load_bundle
from gateway.policy.yamlfile import YamlError, parse
from gateway.recipients import Pseudonymizer, hint, normalize_address
from gateway.service import Gateway, ms
from gateway.store.base import OptOutEntry
from gateway.store.memory import MemoryStore


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _moment(value: datetime) -> datetime:
    """A case's times, held to what a message's own `at` may be: with an offset
    (the test's clock needs one) and well inside datetime's range (near its
    limits the conversion to UTC and the rules' look-ahead overflow)."""
    if value.tzinfo is None:
        raise ValueError("give a time zone offset, e.g. 2026-06-02T11:00:00-04:00")
    if not EARLIEST_AT <= value < LATEST_AT:
        raise ValueError("must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z")
    return value


Moment = Annotated[datetime, AfterValidator(_moment)]


class Sent(Strict):
    at: Moment
    message: dict[str, Any]


class OptOutItem(Strict):
    list: str
    address: str


class Expect(Strict):
    decision: str
    code: str | None = None
    rule: str | None = None
    deliver_at: Moment | None = None


class Case(Strict):
    name: str
    history: list[Sent] = []
    opt_outs: list[OptOutItem] = []
    consents: list[OptOutItem] = []  # kept as opt-outs are: an address on a named list
    at: Moment
    message: dict[str, Any]
    expect: Expect


class CaseFile(Strict):
    cases: list[Case]


@dataclass(frozen=True, slots=True)
class Failure:
    file: str
    case: str
    expected: str
    actual: str

    def __str__(self) -> str:
        # One line per failure, even when a case name from the file holds a newline.
        return one_line(f"{self.file}: {self.case}: expected {self.expected}, got {self.actual}")


def case_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.test.yaml"), *folder.glob("packs/*/*.test.yaml")])


def load_cases(path: Path) -> list[Case]:
    try:
        doc = parse(path.read_text(encoding="utf-8"))
        return CaseFile.model_validate(doc.data).cases
    except OSError as exc:  # e.g. a folder named *.test.yaml
        raise InputError(f"{path}: cannot read the test file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except YamlError as exc:
        raise InputError(f"{path}:{exc.line}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from None


async def run_case(bundle: Bundle, case: Case) -> str:
    """The actual outcome as `decision code rule` (code and rule of the first reason)."""
    store = MemoryStore()
    pseudonyms = Pseudonymizer(b"policy-test-key-")
    clock = FixedClock(case.at)
    gateway = Gateway(
        bundle=lambda: bundle, store=store, trail=MemoryTrail(), pseudonyms=pseudonyms, clock=clock
    )
    for item in [*case.opt_outs, *case.consents]:
        address = normalize_address(item.address)
        entry = OptOutEntry(
            item.list, pseudonyms.token(address), hint(address), ms(case.at), "test"
        )
        await store.opt_out_put(entry)
    for n, sent in enumerate(case.history):
        await _count(bundle, store, pseudonyms, _message(sent.message), sent.at, f"history-{n}")
    try:
        message = _message(case.message, strict=False)
    except InvalidRecipient as exc:  # as the native API decides it
        reason = Reason("recipient", Code.INVALID_RECIPIENT, str(exc))
        return describe("reject", [reason], None, case.expect)
    decision = await gateway.check(message, case.at.astimezone(UTC))
    return describe(decision.decision.value, decision.reasons, decision.deliver_at, case.expect)


async def _count(
    bundle: Bundle,
    store: MemoryStore,
    pseudonyms: Pseudonymizer,
    message: Any,
    at: datetime,
    send_id: str,
) -> None:
    """An earlier send, counted whatever the rules say (it was sent)."""
    plan = engine.plan(bundle, message, pseudonyms.token(message.recipient.address))
    caps = tuple(dataclasses.replace(c, enforced=False) for c in plan.request.caps)
    request = dataclasses.replace(plan.request, opt_out_lists=(), caps=caps)
    await store.fetch(request, ms(at), count=True, send_id=send_id)


def _message(data: dict[str, Any], strict: bool = True) -> Any:
    """The case's message; a recipient that is not valid is an InputError
    (an invalid case) when `strict`, else InvalidRecipient."""
    item = NativeMessage.model_validate(data)
    try:
        return to_message(
            item,
            route="native",
            sender=item.sender or "default",
            category=item.category or "marketing",
        )
    except InvalidRecipient as exc:
        if not strict:
            raise
        raise InputError(str(exc)) from None


def describe(verdict: str, reasons: list[Any], deliver_at: datetime | None, expect: Expect) -> str:
    parts = [verdict]
    if expect.code is not None:
        parts.append(
            next(
                (r.code.value for r in reasons if r.code.value == expect.code),
                reasons[0].code.value if reasons else "-",
            )
        )
    if expect.rule is not None:
        parts.append(
            next(
                (r.rule for r in reasons if r.rule == expect.rule),
                reasons[0].rule if reasons else "-",
            )
        )
    if expect.deliver_at is not None:
        parts.append(deliver_at.astimezone(UTC).isoformat() if deliver_at else "-")
    return " ".join(parts)


def expected(expect: Expect) -> str:
    parts = [expect.decision]
    parts += [p for p in (expect.code, expect.rule) if p is not None]
    if expect.deliver_at is not None:
        parts.append(expect.deliver_at.astimezone(UTC).isoformat())
    return " ".join(parts)


async def run_folder(
    bundle: Bundle, folder: Path, packs: Sequence[str] = ()
) -> tuple[int, list[Failure]]:
    """Run every case; returns (cases run, failures). `bundle` is the folder's
    bundle with `packs` switched on; a pack's own cases (packs/<name>/*.test.yaml)
    run against that bundle with their pack switched on as well."""
    count, failures = 0, []
    bundles: dict[str | None, Bundle] = {None: bundle}
    for path in case_files(folder):
        pack = path.parent.name if path.parent.parent == folder / "packs" else None
        if pack in packs:
            pack = None
        if pack not in bundles:
            bundles[pack] = load_bundle(folder, [*packs, str(pack)])
        for case in load_cases(path):
            count += 1
            try:
                actual = await run_case(bundles[pack], case)
            except InputError as exc:
                actual = f"an invalid case ({json.dumps(str(exc))[:200]})"
            except ValidationError as exc:  # one line, not pydantic's report
                fields = "; ".join(f"{k}: {v}" for k, v in field_errors(exc).items())
                actual = f"an invalid case ({json.dumps(fields)[:200]})"
            if actual != expected(case.expect):
                failures.append(Failure(str(path), case.name, expected(case.expect), actual))
    return count, failures
