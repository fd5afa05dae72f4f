"""`gateway opt-out add|remove|import|export|link`: opt-out lists from the shell.

They write the state the gateway reads: the embedded store in the data folder
(beside a running gateway too: it sees every commit), or Redis in shared
mode, with the pseudonymization key the gateway uses.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from gateway import optouts
from gateway.console import Progress, output
from gateway.errors import GatewayError, InputError
from gateway.recipients import Pseudonymizer, hint, normalize_address, stored_recipient
from gateway.settings import Settings, load_settings
from gateway.store.base import OptOutEntry, Store

T = TypeVar("T")


def add_parser(sub: Any) -> None:
    optout = sub.add_parser(
        "opt-out", help="add, remove, import or export opt-outs, or make unsubscribe links"
    )
    actions = optout.add_subparsers(required=True, metavar="action")
    add = actions.add_parser("add", help="put one address on a list")
    _where(add)
    add.add_argument("--note", help="why, for the record")
    add.set_defaults(run=run_add)
    remove = actions.add_parser("remove", help="take one address off a list")
    _where(remove)
    remove.set_defaults(run=run_remove)
    bulk = actions.add_parser("import", help="put every address of a CSV file on a list")
    _store_options(bulk)
    bulk.add_argument("list", help="the list's name, e.g. global")
    bulk.add_argument("file", help="CSV: one address per row, or an 'address' column; - for stdin")
    bulk.set_defaults(run=run_import)
    dump = actions.add_parser("export", help="every entry of a list, as CSV (import takes it back)")
    _store_options(dump)
    dump.add_argument("list", help="the list's name, e.g. global")
    dump.add_argument("--output", type=Path, help="a file (default: standard output)")
    dump.set_defaults(run=run_export)
    link = actions.add_parser(
        "link", help="a one-click unsubscribe link (RFC 8058) for an address, and its headers"
    )
    _store_options(link)
    link.add_argument("address", help="the recipient's email address (or any address)")
    # Its own dest: `list` is the positional of the other actions.
    link.add_argument(
        "--list", dest="link_list", help="the list it takes them off (default: unsubscribe.list)"
    )
    link.add_argument("--url", help="where mail clients reach POST /v1/unsubscribe")
    link.set_defaults(run=run_link)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default ./gateway.yaml)")
    parser.add_argument("--data-dir", type=Path, help="the gateway's data folder")


def _where(parser: argparse.ArgumentParser) -> None:
    _store_options(parser)
    parser.add_argument("list", help="the list's name, e.g. global or sender:acme")
    parser.add_argument(
        "address", help="a phone number, email address, push token or stored recipient (hmac:...)"
    )


class _Address:
    """The address given, or a stored recipient (copied from an export or a
    decision), which stands for itself and whose address is unknown."""

    def __init__(self, text: str) -> None:
        self.stored = stored_recipient(text)
        self.address = None if self.stored else normalize_address(text)

    def token(self, pseudonyms: Pseudonymizer) -> str:
        return self.stored or pseudonyms.token(self.address or "")

    @property
    def shown(self) -> str:
        return self.stored or hint(self.address or "")


def run_add(args: argparse.Namespace) -> int:
    name, given = _list(args.list), _Address(args.address)
    if args.note is not None and len(args.note) > optouts.MAX_NOTE:
        raise InputError(f"--note: longer than {optouts.MAX_NOTE} characters")

    async def add(store: Store, pseudonyms: Pseudonymizer) -> bool:
        shown = "…" if given.stored else given.shown  # as the API keeps a stored recipient
        entry = OptOutEntry(name, given.token(pseudonyms), shown, _now_ms(), "cli", args.note)
        return await store.opt_out_put(entry)

    added = asyncio.run(_with_store(args, add))
    print(f"{given.shown} {'added to' if added else 'was already on'} {name}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    name, given = _list(args.list), _Address(args.address)

    async def remove(store: Store, pseudonyms: Pseudonymizer) -> bool:
        return await store.opt_out_delete(name, given.token(pseudonyms))

    removed = asyncio.run(_with_store(args, remove))
    print(f"{given.shown} {'removed from' if removed else 'was not on'} {name}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from gateway.cli import read_text

    name = _list(args.list)
    rows = optouts.parse(read_text(args.file))  # every row checked before any is added
    progress = Progress("imported", total=len(rows))

    async def add_all(store: Store, pseudonyms: Pseudonymizer) -> optouts.Imported:
        return await optouts.add_all(store, pseudonyms, name, rows, _now_ms(), progress.count)

    done = asyncio.run(_with_store(args, add_all))
    progress.done()
    print(f"{len(rows):,} rows: {done.added:,} added to {name}, {done.already:,} already on it")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import csv

    from gateway.web.export import OPT_OUT_COLUMNS, PAGE, opt_out_row

    name = _list(args.list)
    progress = Progress("exported", "entries", show=args.output is not None)

    async def write_all(store: Store, out: IO[str]) -> None:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(OPT_OUT_COLUMNS)
        cursor = None
        while True:
            entries, cursor = await store.opt_out_page(name, cursor, PAGE)
            for entry in entries:
                writer.writerow(opt_out_row(entry))
                progress.count()
            if cursor is None:
                return

    settings = load_settings(args.config, data_dir=args.data_dir)
    if not settings.shared and not (settings.data_dir / "state.db").is_file():
        raise GatewayError(f"{settings.data_dir}: no state here, so no opt-outs")

    async def export() -> None:
        async with _store(settings) as store:
            with output(args.output) as out:
                await write_all(store, out)

    asyncio.run(export())
    progress.done(f"exported {progress.n:,} entries to {args.output}" if args.output else None)
    return 0


def run_link(args: argparse.Namespace) -> int:
    from gateway import unsubscribe

    settings = load_settings(args.config, data_dir=args.data_dir)
    base = args.url or settings.unsubscribe.url
    if base is None:
        raise GatewayError(
            "--url: where do mail clients reach POST /v1/unsubscribe? (or set unsubscribe.url)"
        )
    if not base.startswith(("https://", "http://")) or "?" in base or "#" in base:
        raise GatewayError(f"--url: '{base}' is not an http(s) URL without a query")
    address = normalize_address(args.address)
    wanted = unsubscribe.Link(_list(args.link_list or settings.unsubscribe.list), address)

    async def sign(store: Store, pseudonyms: Pseudonymizer) -> str:
        return unsubscribe.token(pseudonyms.derived(unsubscribe.PURPOSE), wanted)

    url = f"{base}?token={asyncio.run(_with_store(args, sign))}"
    print(url)
    print(f"List-Unsubscribe: <{url}>")
    print(f"List-Unsubscribe-Post: {unsubscribe.ONE_CLICK}")
    return 0


def _list(name: str) -> str:
    import regex

    from gateway.web.admin import LIST_NAME

    if not regex.fullmatch(LIST_NAME, name):
        raise InputError(f"'{name}' is not a list name (letters, digits, . _ : @ -)")
    return name


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _with_store(
    args: argparse.Namespace, work: Callable[[Store, Pseudonymizer], Awaitable[T]]
) -> T:
    settings = load_settings(args.config, data_dir=args.data_dir)
    async with _store(settings) as store:
        from gateway.runtime import audit_key

        return await work(store, Pseudonymizer(await audit_key(settings, store)))


def _same_mode(settings: Settings) -> None:
    """GatewayError when the data folder is the other mode's: an opt-out
    written to the store its gateway does not read would be lost unseen."""
    folder = settings.data_dir
    embedded = (folder / "state.db").is_file()
    workers = any(folder.glob("worker-*/audit.db"))
    if settings.shared and embedded and not workers:
        raise GatewayError(
            f"{folder} is an embedded gateway's data folder (state.db), but GATEWAY_REDIS_URL"
            " (store) points this command at Redis: unset it to write where that gateway reads"
        )
    if not settings.shared and workers and not embedded:
        raise GatewayError(
            f"{folder} is a shared-mode data folder (worker-N), but this command uses the"
            " embedded store: set GATEWAY_REDIS_URL (and GATEWAY_REDIS_PREFIX) as for serve"
        )


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Store]:
    from gateway.runtime import open_store
    from gateway.store.sqlite import SqliteStore

    _same_mode(settings)
    if settings.shared:
        store: Store = await open_store(settings)
    else:
        if not settings.data_dir.is_dir():
            # A mistyped folder would get state and a key of its own, which no
            # gateway reads: the opt-out would be lost without a word.
            raise GatewayError(
                f"{settings.data_dir}: no such data folder (give the gateway's --data-dir;"
                " to start an empty one, create the folder first)"
            )
        store = SqliteStore(
            settings.data_dir / "state.db", synchronous_full=settings.synchronous_full
        )
    try:
        yield store
    finally:
        await store.close()
