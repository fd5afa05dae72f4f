"""`gateway audit query|export`: the decision trail of a data folder, from the shell.

The filters are those of `GET /v1/decisions`. The trails are read as they
are on disk (gateway/audit/reader.py), so this works beside a running gateway
and with none: an auditor needs no API key, only read access to the folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from gateway.audit import reader
from gateway.audit.base import DecisionQuery
from gateway.errors import GatewayError
from gateway.settings import Settings, load_settings

FORMATS = ("ndjson", "csv")
PROGRESS_EVERY = 0.25  # seconds between progress lines on a terminal


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="query or export the decision trail of a data folder")
    actions = audit.add_subparsers(required=True, metavar="action")
    query = actions.add_parser("query", help="matching decisions as JSON lines, newest first")
    _filters(query)
    query.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    query.set_defaults(run=run_query)
    export = actions.add_parser("export", help="every matching decision, as NDJSON or CSV")
    _filters(export)
    export.add_argument("--format", choices=FORMATS, default="ndjson")
    export.add_argument("--output", type=Path, help="a file (default: standard output)")
    export.set_defaults(run=run_export)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default ./gateway.yaml)")
    parser.add_argument("--data-dir", type=Path, help="the gateway's data folder")
    parser.add_argument("--recipient", help="a plain address: phone, email or push token")
    parser.add_argument("--sender")
    parser.add_argument("--decision", choices=("allow", "reject", "defer"))
    parser.add_argument("--rule", help="decisions in which this rule failed or was monitored")
    parser.add_argument("--code", help="decisions with this reason code")
    parser.add_argument("--since", help="from this time on (ISO 8601; UTC if no offset)")
    parser.add_argument("--until", help="before this time (ISO 8601; UTC if no offset)")


def run_query(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise GatewayError(f"--limit: {args.limit} is not a positive number")
    settings = load_settings(args.config, data_dir=args.data_dir)
    found = reader.records(settings.data_dir, _query(args, settings))
    for record in _first(found, args.limit):
        print(json.dumps(record, ensure_ascii=False))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from gateway.web.export import row

    settings = load_settings(args.config, data_dir=args.data_dir)
    found = reader.records(settings.data_dir, _query(args, settings))
    with _output(args.output) as out:
        progress = _Progress(enabled=args.output is not None and sys.stderr.isatty())
        if args.format == "csv":
            import csv

            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(_columns())
            for record in found:
                writer.writerow(row(record))
                progress.count()
        else:
            for record in found:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                progress.count()
    if args.output is not None:
        progress.done(f"exported {progress.n:,} decisions to {args.output}")
    return 0


def _columns() -> tuple[str, ...]:
    from gateway.web.export import COLUMNS

    return COLUMNS


def _first(found: Iterator[dict[str, Any]], limit: int) -> Iterator[dict[str, Any]]:
    for n, record in enumerate(found):
        if n >= limit:
            return
        yield record


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """Standard output, or a file that appears whole or not at all: written
    beside it under another name and renamed once complete."""
    if path is None:
        yield sys.stdout
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        file = partial.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise GatewayError(f"--output: cannot write {path} ({exc.strerror})") from None
    try:
        with file:
            yield file
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class _Progress:
    """A line on the terminal that says how far a long export has got."""

    def __init__(self, enabled: bool) -> None:
        self.n = 0
        self._enabled = enabled
        self._shown = time.monotonic()

    def count(self) -> None:
        self.n += 1
        if self._enabled and time.monotonic() - self._shown >= PROGRESS_EVERY:
            self._shown = time.monotonic()
            print(f"\rexported {self.n:,} decisions", end="", file=sys.stderr, flush=True)

    def done(self, line: str) -> None:
        print(("\r" if self._enabled else "") + line, file=sys.stderr)


def _query(args: argparse.Namespace, settings: Settings) -> DecisionQuery:
    recipient = None
    if args.recipient is not None:
        recipient = asyncio.run(_pseudonym(settings, args.recipient))
    return DecisionQuery(
        recipient=recipient,
        sender=args.sender,
        decision=args.decision,
        rule=args.rule,
        code=args.code,
        since_ms=_time_ms("--since", args.since),
        until_ms=_time_ms("--until", args.until),
    )


def _time_ms(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(f"{name}: '{text}' is not an ISO 8601 time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        return int(at.timestamp() * 1000)
    except (OverflowError, ValueError):
        raise GatewayError(f"{name}: '{text}' is out of range") from None


async def _pseudonym(settings: Settings, address: str) -> str:
    """The recipient as the trail stores it: hashed with the gateway's key."""
    from gateway.recipients import Pseudonymizer, normalize_address

    normalized = normalize_address(address)  # a bad address is an InputError
    return Pseudonymizer(await _kept_key(settings)).token(normalized)


async def _kept_key(settings: Settings) -> bytes:
    """The key the gateway uses, never a new one: a folder without one has
    recorded nothing that a recipient could find."""
    from gateway.runtime import open_store
    from gateway.store import pseudonym_key
    from gateway.store.sqlite import SqliteStore

    if settings.audit.key:
        return settings.audit.key.encode("utf-8")
    if not settings.shared and not (settings.data_dir / "state.db").is_file():
        raise GatewayError(f"{settings.data_dir}: no state here, so no pseudonymization key")

    def missing() -> bytes:
        raise GatewayError(
            "no pseudonymization key has been kept yet, so no recipient can be looked up"
        )

    store = await open_store(settings) if settings.shared else None
    store = store or SqliteStore(settings.data_dir / "state.db")
    try:
        return await store.secret(pseudonym_key.NAME, missing)
    finally:
        await store.close()
