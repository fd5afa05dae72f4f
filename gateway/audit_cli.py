"""`gateway audit query|export|verify|prune`: the decision trail of a data folder, from the shell.

The filters are those of `GET /v1/decisions`. The trails are read as they
are on disk (gateway/audit/reader.py), so this works beside a running gateway
and with none: an auditor needs no API key, only read access to the folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit import chain, reader, retention, verify
from gateway.audit.base import DecisionQuery
from gateway.console import Progress, output
from gateway.errors import GatewayError
from gateway.jsonio import json_line
from gateway.model import CODES
from gateway.policy.schema import parse_duration
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    from gateway.audit.postgres import PostgresTrail

FORMATS = ("ndjson", "csv")
T = TypeVar("T")


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
    check = actions.add_parser(
        "verify", help="check the hash chain of every trail in the data folder"
    )
    check.add_argument("--config", type=Path, help="config file (default ./gateway.yaml)")
    check.add_argument("--data-dir", type=Path, help="the gateway's data folder")
    check.add_argument("--head", help="a head printed by an earlier verify: it must be found")
    check.add_argument("--json", action="store_true", help="the whole report as JSON")
    check.set_defaults(run=run_verify)
    prune = actions.add_parser("prune", help="remove records older than the retention")
    prune.add_argument("--config", type=Path, help="config file (default ./gateway.yaml)")
    prune.add_argument("--data-dir", type=Path, help="the gateway's data folder")
    prune.add_argument(
        "--older-than", help="a duration such as 400d (default: audit.retention of the config)"
    )
    prune.set_defaults(run=run_prune)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default ./gateway.yaml)")
    parser.add_argument("--data-dir", type=Path, help="the gateway's data folder")
    parser.add_argument(
        "--recipient",
        help="a plain address (phone, email or push token) or a stored recipient (hmac:...)",
    )
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
    found = _records(settings, _query(args, settings))
    for record in _first(found, args.limit):
        print(json_line(record))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from gateway.web.export import COLUMNS, row

    settings = load_settings(args.config, data_dir=args.data_dir)
    found = _records(settings, _query(args, settings))
    progress = Progress("exported", "decisions", show=args.output is not None)
    with output(args.output) as out:
        if args.format == "csv":
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(COLUMNS)
            for record in found:
                writer.writerow(row(record))
                progress.count()
        else:
            for record in found:
                out.write(json_line(record) + "\n")
                progress.count()
    progress.done(f"exported {progress.n:,} decisions to {args.output}" if args.output else None)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 if every trail is intact (and holds --head), 1 if not."""
    head = None if args.head is None else args.head.strip().lower()
    if head is not None and not chain.is_head(head):
        raise GatewayError(f"--head: '{args.head}' is not a head (64 hexadecimal digits)")
    settings = load_settings(args.config, data_dir=args.data_dir)
    reports = _checked(settings, () if head is None else (head,))
    summary = verify.summary(reports, head)
    if args.json:
        print(json_line(summary))
    else:
        for report in reports:
            print(_verdict(report, settings.data_dir))
        if head is not None:
            print(f"head {head}: {'found' if summary['head_found'] else 'NOT FOUND in any trail'}")
    return 0 if summary["intact"] else 1


def _checked(settings: Settings, heads: tuple[str, ...]) -> list[verify.Report]:
    """Every trail of the data folder verified, or the PostgreSQL trail's writers."""
    if settings.audit.url is not None:
        return _on_postgres(settings, lambda trail: trail.reports(heads))
    paths = reader.index_files(settings.data_dir)
    total = sum(verify.journal_bytes(path) for path in paths)
    progress = Progress("verified", "MB of journal", total=max(1, total >> 20))
    reports: list[verify.Report] = []
    for path in paths:
        before = progress.n << 20

        def heard(n: int, before: int = before) -> None:
            progress.count((before + n) >> 20)

        reports.append(verify.trail(path, heads, heard))
    progress.done()
    return reports


def _on_postgres(settings: Settings, work: Callable[[PostgresTrail], Awaitable[T]]) -> T:
    """`work(trail)` on the PostgreSQL trail, opened to read only."""
    from gateway.audit.postgres import PostgresTrail

    async def run() -> T:
        assert settings.audit.url is not None
        trail = await PostgresTrail.open(settings.audit.url, settings.audit.table)
        try:
            return await work(trail)
        finally:
            await trail.close()

    return asyncio.run(run())


def _records(settings: Settings, query: DecisionQuery) -> Iterator[dict[str, Any]]:
    """The matching decisions, newest first: of every trail in the data folder,
    or of the PostgreSQL trail (a page at a time, on a loop of its own)."""
    if settings.audit.url is None:
        yield from reader.records(settings.data_dir, query)
        return
    from gateway.audit.postgres import PostgresTrail

    loop = asyncio.new_event_loop()
    try:
        trail = loop.run_until_complete(
            PostgresTrail.open(settings.audit.url, settings.audit.table)
        )
        try:
            page = replace(query, limit=reader.PAGE)
            while True:
                found, more = loop.run_until_complete(trail.query(page))
                yield from found
                if more is None:
                    return
                page = replace(page, before=more)
        finally:
            loop.run_until_complete(trail.close())
    finally:
        loop.close()


def run_prune(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=args.data_dir)
    text = args.older_than or settings.audit.retention
    if text is None:
        raise GatewayError("--older-than: how old? (e.g. 400d; or set audit.retention)")
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise GatewayError(f"--older-than: {exc}") from None
    if seconds < 86400:  # as audit.retention: a typo must not empty the trail
        raise GatewayError(f"--older-than: '{text}' is shorter than a day")
    cutoff_ms = int((time.time() - seconds) * 1000)
    if settings.audit.url is not None:
        done = _on_postgres(settings, lambda trail: trail.prune(cutoff_ms))
        removed = f"{_many(done.decisions, 'decision')} and {_many(done.amendments, 'amendment')}"
        print(f"{settings.audit.table}: removed {removed} older than {text}")
        return 0
    progress = Progress("removed", "rows")
    for path in reader.index_files(settings.data_dir):
        done = retention.prune(path, cutoff_ms, progress.count)
        name = path.relative_to(settings.data_dir)
        progress.done(None)
        removed = f"{_many(done.decisions, 'decision')} and {_many(done.amendments, 'amendment')}"
        where = _many(done.files, "journal file")
        print(f"{name}: removed {removed} ({where}) older than {text}")
    return 0


def _many(n: int, noun: str, nouns: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def _verdict(report: verify.Report, data_dir: Path) -> str:
    """One line per trail: what was checked, and the first problem if any."""
    name = Path(report.trail)
    with contextlib.suppress(ValueError):
        name = name.relative_to(data_dir)
    counts = (
        f"{_many(report.entries, 'entry', 'entries')} ({_many(report.decisions, 'decision')},"
        f" {_many(report.amendments, 'amendment')}) in {_many(report.files, 'file')}"
    )
    if not report.files:  # a writer of the PostgreSQL trail
        counts = counts.rsplit(" in ", 1)[0]
    if report.unchained:
        counts += f", {report.unchained:,} from before the chain"
    if report.pruned:
        counts += f", after {_many(report.pruned, 'decision')} removed by retention"
    problem = report.problem
    if problem is None:
        return f"{name}: intact, {counts}; head {report.head or 'none (nothing chained yet)'}"
    line = f" line {problem.line}" if problem.line is not None else ""
    where = f"{problem.file}{line} (byte {problem.offset})" if problem.file else ""
    about = f"decision {problem.decision_id}" if problem.decision_id else ""
    at = " ".join(part for part in (where, about) if part)  # a row of the index: no file
    return f"{name}: ALTERED at {at}: {problem.reason} (checked {counts})"


def _first(found: Iterator[dict[str, Any]], limit: int) -> Iterator[dict[str, Any]]:
    for n, record in enumerate(found):
        if n >= limit:
            return
        yield record


def _query(args: argparse.Namespace, settings: Settings) -> DecisionQuery:
    # An empty filter is one left unfilled (a script's empty variable), not
    # "any": refused, as the HTTP API refuses it, rather than matching nothing.
    for name in ("recipient", "sender", "decision", "rule", "code", "since", "until"):
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            raise GatewayError(f"--{name}: empty; leave a filter out to match every decision")
    if args.code is not None and args.code not in CODES:
        raise GatewayError(f"--code: '{args.code}' is not a reason code ({', '.join(CODES)})")
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
    from gateway.recipients import Pseudonymizer, normalize_address, stored_recipient

    stored = stored_recipient(address)  # copied from an export: stands for itself
    if stored is not None:
        return stored
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
        where = (
            f"Redis under the prefix '{settings.redis_prefix}' (is it the gateway's?"
            " set GATEWAY_REDIS_PREFIX)"
            if settings.shared
            else str(settings.data_dir)
        )
        raise GatewayError(
            f"no pseudonymization key is kept in {where}, so no recipient can be looked up"
        )

    store = await open_store(settings) if settings.shared else None
    store = store or SqliteStore(settings.data_dir / "state.db")
    try:
        key = await store.secret(pseudonym_key.NAME, missing)
    finally:
        await store.close()
    if settings.shared:
        # As `serve` refuses to: another key would find none of this folder's records.
        pseudonym_key.check_remembered(key, settings.data_dir)
    return key
