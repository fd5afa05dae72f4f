"""`gateway policy test`: the cases of `*.test.yaml`, each against a fresh in-memory state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gateway import engine
from gateway.adapters.native import EARLIEST_AT, LATEST_AT, NativeMessage, field_errors, to_message
from gateway.audit.memory import MemoryTrail
from gateway.clock import FixedClock
from gateway.errors import InputError, InvalidRecipient, one_line
from gateway.model import Code, Reason
from gateway.policy.bundle import Bundle
from gateway.policy.loader import explain, field_name, is_test_file, load_bundle
from gateway.policy.yamlfile import Located, YamlError, parse
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
    decision: Literal["allow", "reject", "defer"]
    code: Code | None = None
    rule: str | None = None  # a rule of the bundle, checked when the file loads
    deliver_at: Moment | None = None

    @field_validator("code", "rule")
    @classmethod
    def _reasons(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("decision") == "allow":
            raise ValueError("is for decision reject or defer (an allowed message has no reasons)")
        return value

    @field_validator("deliver_at")
    @classmethod
    def _deferred(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("decision") not in (None, "defer"):
            raise ValueError("is for decision defer only")
        return value


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
    reasons: str = ""  # every reason of the actual decision: what to fix

    def __str__(self) -> str:
        # One line per failure, even when a case name from the file holds a newline.
        why = f" (reasons: {self.reasons})" if self.reasons else ""
        return one_line(
            f"{self.file}: {self.case}: expected {self.expected}, got {self.actual}{why}"
        )


def case_files(folder: Path) -> list[Path]:
    """The test files of the folder and of its packs (hidden ones left out)."""
    packs = [p for p in sorted(folder.glob("packs/*")) if p.is_dir()]
    return sorted(
        path
        for where in (folder, *packs)
        for path in where.iterdir()
        if is_test_file(path.name) and not path.name.startswith(".")
    )


# Not a rule of the bundle: what the reason for an invalid recipient names.
_RECIPIENT = "recipient"


def load_cases(path: Path, rule_ids: Collection[str] | None = None) -> list[Case]:
    """The cases of a test file; InputError naming the file, the line and the
    case of its first problem. With `rule_ids`, `expect.rule` must be one."""
    try:
        doc = parse(path.read_text(encoding="utf-8"))
    except OSError as exc:  # e.g. a folder named *.test.yaml
        raise InputError(f"{path}: cannot read the test file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except YamlError as exc:
        raise InputError(f"{path}:{exc.line}: {exc}") from None
    if doc.data is None:
        raise InputError(f"{path}:1: the file is empty; it needs a 'cases:' list")
    if not isinstance(doc.data, dict):
        raise InputError(f"{path}:1: the file must be a mapping with a 'cases:' list")
    cases: list[Case] = []
    try:
        cases = CaseFile.model_validate(doc.data).cases
    except ValidationError as exc:
        problems = explain(exc, CaseFile, doc.data)
    else:
        problems = []
    # What the schema leaves to the messages and the bundle, found in every
    # case at once: a mistake in a case is the file's, not a failing case.
    raw = doc.data.get("cases")
    for n, case in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(case, dict):
            problems += _case_problems(("cases", n), case, rule_ids)
    if problems:
        lines = sorted(
            (doc.line(loc), _problem(path, doc, loc, why)) for loc, why in dict(problems).items()
        )
        raise CaseFileError([line for _, line in lines])
    return cases


Problem = tuple[tuple[str | int, ...], str]


def _case_problems(
    at: tuple[str | int, ...], case: dict[str, Any], rule_ids: Collection[str] | None
) -> list[Problem]:
    """The mistakes in a case's messages, addresses and expected rule."""
    problems: list[Problem] = []
    if isinstance(message := case.get("message"), dict):
        problems += _message_problems((*at, "message"), message, strict=False)
    history = case.get("history")
    for i, sent in enumerate(history if isinstance(history, list) else []):
        if isinstance(sent, dict) and isinstance(message := sent.get("message"), dict):
            problems += _message_problems((*at, "history", i, "message"), message, strict=True)
    for kind in ("opt_outs", "consents"):
        items = case.get(kind)
        for i, item in enumerate(items if isinstance(items, list) else []):
            address = item.get("address") if isinstance(item, dict) else None
            if isinstance(address, str):
                try:
                    normalize_address(address)
                except InvalidRecipient as exc:
                    problems.append(((*at, kind, i, "address"), str(exc)))
    expect = case.get("expect")
    rule = expect.get("rule") if isinstance(expect, dict) else None
    if isinstance(rule, str) and rule_ids is not None and rule not in (*rule_ids, _RECIPIENT):
        problems.append(((*at, "expect", "rule"), f"'{rule}' is not a rule of the bundle"))
    return problems


def _message_problems(
    at: tuple[str | int, ...], data: dict[str, Any], strict: bool
) -> list[Problem]:
    """Why a case's message is not one the native API takes; with `strict`
    (an earlier send, which was sent), a recipient that is not valid too."""
    try:
        item = NativeMessage.model_validate(data)
    except ValidationError as exc:
        return [((*at, *loc), why) for loc, why in explain(exc, NativeMessage, data)]
    if item.channel == "email" and item.subject is None:
        return [((*at, "subject"), "required for email")]
    if strict:
        try:
            _message(data)
        except InputError as exc:
            return [((*at, "to"), str(exc))]
    return []


class CaseFileError(InputError):
    """A test file with mistakes: `problems` holds one line for each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problems in this file)" if problems[1:] else ""
        super().__init__(problems[0] + more)


def _problem(path: Path, doc: Located, loc: tuple[str | int, ...], why: str) -> str:
    """`file:line: case: field: what is wrong`, the case by its name if it has one."""
    where, label = f"{path}:{doc.line(loc)}: ", ""
    if len(loc) > 1 and loc[0] == "cases" and isinstance(loc[1], int):
        item = doc.data["cases"][loc[1]]
        name = item.get("name") if isinstance(item, dict) else None
        label = f"{name if isinstance(name, str) and name else f'cases[{loc[1]}]'}: "
        loc = loc[2:]
    field = field_name(loc)
    return f"{where}{label}{field + ': ' if field else ''}{why}"


async def run_case(bundle: Bundle, case: Case) -> tuple[str, str]:
    """The actual outcome as `decision code rule` (code and rule of the first
    reason, or of the one expected), and every reason as `code rule; ...`."""
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
        return describe("reject", [reason], None, case.expect), _reasons([reason])
    decision = await gateway.check(message, case.at.astimezone(UTC))
    actual = describe(decision.decision.value, decision.reasons, decision.deliver_at, case.expect)
    return actual, _reasons(decision.reasons)


def _reasons(reasons: list[Reason]) -> str:
    return "; ".join(f"{r.code.value} {r.rule}" for r in reasons)


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
    parts: list[str] = [expect.decision]
    parts += [p for p in (expect.code, expect.rule) if p is not None]
    if expect.deliver_at is not None:
        parts.append(expect.deliver_at.astimezone(UTC).isoformat())
    return " ".join(parts)


async def run_folder(bundle: Bundle, folder: Path) -> tuple[int, list[Failure]]:
    """Run every case; returns (cases run, failures). `bundle` is the folder's
    bundle with `packs` switched on, for the folder's own cases; a pack's
    cases (packs/<name>/*.test.yaml) test the pack, so they run against its
    rules alone, whether it is switched on or not: the folder's own rules
    (a required "Reply STOP") would fail them for reasons not the pack's."""
    count, failures = 0, []
    bundles: dict[str | None, Bundle] = {None: bundle}
    for path in case_files(folder):
        pack = path.parent.name if path.parent.parent == folder / "packs" else None
        if pack not in bundles:
            bundles[pack] = load_bundle(folder, [str(pack)], own=False)
        for case in load_cases(path, [rule.id for rule in bundles[pack].rules]):
            count += 1
            reasons = ""
            try:
                actual, reasons = await run_case(bundles[pack], case)
            except InputError as exc:
                actual = f"an invalid case ({json.dumps(str(exc))[:200]})"
            except ValidationError as exc:  # one line, not pydantic's report
                fields = "; ".join(f"{k}: {v}" for k, v in field_errors(exc).items())
                actual = f"an invalid case ({json.dumps(fields)[:200]})"
            if actual != expected(case.expect):
                wanted = expected(case.expect)
                failures.append(Failure(str(path), case.name, wanted, actual, reasons))
    return count, failures
