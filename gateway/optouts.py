"""Opt-outs in bulk: a CSV of addresses read, checked whole, then added to a list.

Used by `POST /v1/opt-outs/{list}/import` and `gateway opt-out import`.

The file: one address per row (phone, email or push token, as the single
opt-out endpoints take them), optionally followed by a note, or a CSV whose
header row names an `address` (or `recipient`) column, in any place and case,
and optionally a `note` column; blank rows and rows starting with `#` are skipped. A recipient as
the gateway stores it (`hmac:…`) is taken too, so an export
(gateway/web/export.py) can be imported into a gateway with the same
pseudonymization key.

Nothing is added unless every row is valid: the problems are listed, each
with its row number, as a policy bundle's are. Adding is idempotent (an
address already on the list keeps its entry), so an import cut short by a
crash is finished by running it again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.errors import InputError, InvalidRecipient
from gateway.recipients import Pseudonymizer, hint, normalize_address, stored_recipient
from gateway.store.base import OptOutEntry, Store

YIELD_EVERY = 256  # rows between turns of the event loop: messages go on during an import
MAX_PROBLEMS = 20  # listed in an error; the rest are counted
MAX_NOTE = 1000


@dataclass(frozen=True, slots=True)
class Row:
    number: int  # the row's line in the file, from 1
    address: str  # normalized; or a stored recipient (hmac:...)
    note: str | None
    hint: str | None = None  # a stored recipient's, from an export's recipient_hint column


@dataclass(frozen=True, slots=True)
class Imported:
    added: int
    already: int  # on the list before: their entries were kept


def parse(text: str) -> list[Row]:
    """Every row of an import, or InputError naming each bad row."""
    parsing = Parsing()
    for _ in parsing.steps(text):
        pass
    return parsing.result()


async def parse_between_messages(text: str) -> list[Row]:
    """`parse` inside a serving process: it lets the event loop serve
    messages every YIELD_EVERY rows instead of holding it for the whole file."""
    parsing = Parsing()
    for _ in parsing.steps(text):
        await asyncio.sleep(0)
    return parsing.result()


class Parsing:
    """The rows and problems of one file, read a batch of rows at a time."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.problems: list[str] = []

    def steps(self, text: str) -> Iterator[None]:
        """Read the file, pausing (yielding) after every YIELD_EVERY rows."""
        # Rows end at line ends only (U+2028 in a note is a character of it).
        reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
        columns: tuple[int, int | None, int | None] | None = None  # address, note, hint
        for count in itertools.count(1):
            number = reader.line_num + 1  # the line the row starts on
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a stray quote, a value past csv's size limit
                open_quote = " (a quote left open?)" if "end of data" in str(exc) else ""
                self.problems.append(f"row {number}: not CSV: {exc}{open_quote}")
                return  # what follows cannot be told apart reliably
            if count % YIELD_EVERY == 0:
                yield
            if any("\n" in field or "\r" in field for field in fields):
                # An address or a note never spans lines: a quote left open
                # would otherwise take the rows after it into a note.
                self.problems.append(
                    f"row {number}: a quoted value runs over lines {number}-{reader.line_num}"
                    " (a quote left open?)"
                )
                continue
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            if columns is None:
                columns = _header(fields)
                if columns is not None:
                    self.problems += _repeated(number, fields)
                    continue
                columns = _NO_HEADER
                if _HEADER_WORDS.intersection(f.strip().lower() for f in fields):
                    self.problems.append(
                        f"row {number} looks like a header but names no 'address'"
                        " (or 'recipient') column"
                    )
                    continue
            row = _row(number, fields, columns, self.problems)
            if row is not None:
                self.rows.append(row)

    def result(self) -> list[Row]:
        if self.problems:
            shown = self.problems[:MAX_PROBLEMS]
            if len(self.problems) > MAX_PROBLEMS:
                shown.append(f"and {len(self.problems) - MAX_PROBLEMS} more rows")
            raise InputError(
                f"the import was refused, nothing was added: {'; '.join(shown)}",
                {"rows": f"{len(self.problems)} invalid"},
            )
        if not self.rows:
            raise InputError("the import holds no address", {"rows": "empty"})
        return self.rows


# Column names of contact lists: a first row holding one, without an address
# column, is a header the import would otherwise take for push tokens.
_HEADER_WORDS = frozenset(
    {"email", "e-mail", "phone", "phone_number", "number", "mobile", "msisdn", "to", "token"}
    | {"name", "contact", "id", "list", "notes", "comment"}
)


# Without a header row: the address, then perhaps a note, and nothing more.
_NO_HEADER: tuple[int, int | None, int | None] = (0, 1, None)


def _header(fields: list[str]) -> tuple[int, int | None, int | None] | None:
    names = [field.strip().lower() for field in fields]
    # "recipient": the column of an export, which holds stored recipients
    # (and their masked hints in "recipient_hint").
    column = next((name for name in ("address", "recipient") if name in names), None)
    if column is None:
        return None

    def at(name: str) -> int | None:
        return names.index(name) if name in names else None

    return names.index(column), at("note"), at("recipient_hint")


def _repeated(number: int, fields: list[str]) -> list[str]:
    """A header naming a column twice: which one holds the address is a guess."""
    names = [field.strip().lower() for field in fields]
    twice = sorted({name for name in names if name and names.count(name) > 1})
    return [f"row {number}: the header names '{name}' twice" for name in twice]


def _row(
    number: int,
    fields: list[str],
    columns: tuple[int, int | None, int | None],
    problems: list[str],
) -> Row | None:
    at, note_at, hint_at = columns
    if columns is _NO_HEADER and any(field.strip() for field in fields[2:]):
        problems.append(
            f"row {number}: more columns than an address and a note; a header row"
            " (address,note,...) says which column is which"
        )
        return None
    raw = fields[at].strip() if at < len(fields) else ""
    note = None
    if note_at is not None and note_at < len(fields):
        note = fields[note_at].strip() or None
    if not raw:
        problems.append(f"row {number}: no address")
        return None
    if note is not None and len(note) > MAX_NOTE:
        problems.append(f"row {number}: the note is longer than {MAX_NOTE} characters")
        return None
    stored = stored_recipient(raw)
    if stored is not None:
        given = hint_at is not None and hint_at < len(fields)
        shown = fields[hint_at].strip()[:64] if hint_at is not None and given else ""
        return Row(number, stored, note, shown or None)
    try:
        return Row(number, normalize_address(raw), note)
    except InvalidRecipient as exc:
        problems.append(f"row {number}: {exc}")
        return None


async def add_all(
    store: Store,
    pseudonyms: Pseudonymizer,
    list_name: str,
    rows: list[Row],
    at_ms: int,
    progress: Callable[[int], None] | None = None,
) -> Imported:
    """Add every row to the list (source `import`), in file order."""
    added = 0
    for done, row in enumerate(rows, 1):
        stored = row.address.startswith("hmac:")
        recipient = row.address if stored else pseudonyms.token(row.address)
        shown = (row.hint or "…") if stored else hint(row.address)
        entry = OptOutEntry(list_name, recipient, shown, at_ms, "import", row.note)
        added += await store.opt_out_put(entry)
        if progress is not None:
            progress(done)
        if done % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a store call need not give the loop a turn
    return Imported(added, len(rows) - added)
