"""`gateway ...`: the command line, over the same pieces as the server.

Errors are one clear line on stderr and a non-zero exit; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import (
    GatewayError,
    InputError,
    InvalidRecipient,
    PolicyError,
    StoreUnavailable,
    one_line,
)
from gateway.jsonio import json_line
from gateway.policy.bundle import Bundle, route_warnings
from gateway.policy.loader import load_bundle
from gateway.settings import Settings, load_settings, unknown_variables

if TYPE_CHECKING:  # the adapters load with the server's dependencies: only when used
    from gateway.adapters.native import CheckRequest


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # What any command writes (state, trail, the kept key, exports of them)
    # is for its user alone; a server's workers and indexer inherit the mask.
    os.umask(0o077)
    try:
        _refuse_undecodable(args, _shown_names(parser))
        result: int = args.run(args)
    except PolicyError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"the policy bundle was refused: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"gateway: {one_line(str(exc))}", file=sys.stderr)  # even if a path holds a newline
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`gateway audit export | head`): say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


# Arguments that name files may hold any bytes (Python keeps them, and the
# file system takes them back); every other text must be UTF-8.
_FILE_ARGUMENTS = frozenset({"file"})


def _refuse_undecodable(args: argparse.Namespace, shown: dict[str, str]) -> None:
    """Bytes that are not UTF-8 in an argument reach Python as lone surrogates,
    which no store or trail can write: refused here, in one line."""
    for name, value in vars(args).items():
        if name in _FILE_ARGUMENTS or not isinstance(value, str):
            continue
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            raise InputError(f"{shown.get(name, name)}: not UTF-8 text")


def _shown_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each argument's name as the user typed it (`--note`, `list`), by its dest."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _shown_names(sub)
        elif action.option_strings:
            names[action.dest] = max(action.option_strings, key=len)
        else:
            names[action.dest] = action.dest
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Message compliance gateway")
    sub = parser.add_subparsers(required=True, metavar="command")

    serve = sub.add_parser("serve", help="run the gateway")
    _common(serve)
    serve.add_argument("--data-dir", type=Path)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=_at_least_one, default=1, help="processes (shared mode only)"
    )
    serve.set_defaults(run=_serve)

    check = sub.add_parser("check", help="decide messages offline, one JSON line each")
    _common(check)
    check.add_argument("--at", help="the moment to judge at (ISO 8601 with offset)")
    check.add_argument("--data-dir", type=Path, help="check against this live state")
    check.add_argument("file", help="a JSON message, JSON lines, or - for standard input")
    check.set_defaults(run=_check)

    policy = sub.add_parser("policy", help="check, test or describe a policy bundle")
    policy_sub = policy.add_subparsers(required=True, metavar="action")
    for name, run, text in (
        ("check", _policy_check, "validate the bundle"),
        ("test", _policy_test, "run the *.test.yaml cases"),
        ("schema", _policy_schema, "print the JSON Schema of rule files"),
    ):
        action = policy_sub.add_parser(name, help=text)
        action.add_argument("dir", nargs="?", type=Path, help="policies folder")
        action.add_argument("--config", type=Path)
        action.set_defaults(run=run)

    from gateway import audit_cli, optout_cli

    audit_cli.add_parser(sub)
    optout_cli.add_parser(sub)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default ./gateway.yaml)")
    parser.add_argument("--policies", type=Path, help="policies folder")


def _at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of processes (1 or more)")
    return number


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(args.config, policies=getattr(args, "policies", None), **extra)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings(args, data_dir=args.data_dir, host=args.host, port=args.port)
    _refuse_open_network(settings)
    _can_listen(settings.host, settings.port)
    if args.workers > 1 and not settings.shared:
        raise GatewayError(
            "--workers needs shared mode (GATEWAY_REDIS_URL): one process owns a data folder"
        )
    from gateway.policy.holder import Policies

    # A broken bundle is refused before listening, and an unreachable shared store
    # before a data folder is claimed, so a refused start leaves no folder behind.
    # With workers, each builds its own app (and claims its own worker-N folder),
    # so this process claims none.
    policies = Policies(settings.policies, settings.packs)
    if settings.shared:
        from gateway.runtime import check_shared_store

        warning = asyncio.run(check_shared_store(settings))
        if warning:
            print(f"gateway: {warning}", file=sys.stderr)
    app = None if args.workers > 1 else _claiming_app(settings, policies)
    for var in unknown_variables(os.environ):
        print(f"gateway: {var} is not a setting, so it is ignored", file=sys.stderr)
    for warning in route_warnings(policies.current(), [r.name for r in settings.routes]):
        print(f"gateway: warning: {warning}", file=sys.stderr)
    if not settings.api_keys:
        print(
            "gateway: no API keys configured: every endpoint is open, so it listens on "
            f"loopback only ({settings.host})",
            file=sys.stderr,
        )
    store = (
        "Redis (shared mode)"
        if settings.shared
        else "in memory (a restart forgets every opt-out, count and held message)"
        if settings.store == "memory"
        else f"embedded, in {settings.data_dir}"
    )
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    print(
        f"gateway: serving http://{settings.host}:{settings.port}{workers}; policies"
        f" {policies.current().version[:19]}…, {len(policies.current().rules)} rules;"
        f" store {store}; Ctrl-C stops it",
        file=sys.stderr,
    )
    if args.workers > 1:
        _export(settings)
        uvicorn.run(
            "gateway.cli:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            log_level="warning",
        )
    else:
        assert app is not None
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


def _can_listen(host: str, port: int) -> None:
    """GatewayError when nothing can listen there (the port taken, the
    address not this host's): one line, before the start-up lines say
    "serving", rather than uvicorn's own error after them."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise GatewayError(f"cannot listen on {host}:{port}: {why}") from None


def _claiming_app(settings: Settings, policies: Any) -> Any:
    from gateway.app import create_app

    try:
        return create_app(settings, policies=policies, tune_gc=True)
    except OSError as exc:  # the data folder is a file, or cannot be created
        raise GatewayError(
            f"data_dir: cannot use {settings.data_dir} as the data folder ({exc.strerror})"
        ) from None


def _refuse_open_network(settings: Settings) -> None:
    if settings.api_keys:
        return
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if not loopback:
        raise GatewayError(
            f"refusing to listen on {settings.host} with no API keys: every endpoint would be "
            "open; configure api_keys or listen on 127.0.0.1"
        )


def _export(settings: Settings) -> None:
    os.environ["GATEWAY_SETTINGS_JSON"] = settings.model_dump_json()


def app_from_env() -> Any:
    """The app for each worker process (uvicorn imports it by name)."""
    from gateway.app import create_app

    settings = Settings.model_validate_json(os.environ["GATEWAY_SETTINGS_JSON"])
    return create_app(settings, tune_gc=True)


def _policy_folder(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The folder to read (the argument, else the config's) and the packs the
    config switches on (the config file, else ./gateway.yaml, and GATEWAY_PACKS),
    so that what is checked or tested is the bundle `serve` would run."""
    settings = load_settings(args.config)
    return (args.dir if args.dir is not None else settings.policies), settings.packs


def _policy_check(args: argparse.Namespace) -> int:
    folder, packs = _policy_folder(args)
    bundle = load_bundle(folder, packs)
    routes = [route.name for route in load_settings(args.config).routes]
    for warning in route_warnings(bundle, routes):
        print(f"warning: {warning}", file=sys.stderr)
    rules, files = len(bundle.rules), len(bundle.files)
    # Which packs were read, since they come from the config, not the folder.
    with_packs = f"packs {', '.join(packs)}" if packs else "no packs (the config switches none on)"
    print(f"{folder}: {rules} rules in {files} files, {with_packs}, version {bundle.version}")
    return 0


def _policy_schema(args: argparse.Namespace) -> int:
    from gateway.policy.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from gateway.policytest import CaseFileError, run_folder

    folder, packs = _policy_folder(args)
    bundle = load_bundle(folder, packs)
    try:
        count, failures = asyncio.run(run_folder(bundle, folder))
    except CaseFileError as exc:  # every mistake of the file at once, as `policy check` does
        for line in exc.problems:
            print(one_line(line), file=sys.stderr)
        print(f"the test file was refused: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    for failure in failures:
        print(failure)
    print(
        f"{count - len(failures)} passed, {len(failures)} failed",
        file=sys.stderr if failures else sys.stdout,
    )
    return 1 if failures else 0


def _check(args: argparse.Namespace) -> int:
    settings = _settings(args, data_dir=args.data_dir)
    bundle = load_bundle(settings.policies, settings.packs)
    at = _parse_at(args.at) if args.at else None
    # Undecodable bytes stay in the text as lone surrogates: each line that
    # holds some answers with its own error, and the others are checked.
    text = read_text(args.file, errors="surrogateescape").removeprefix("\ufeff")
    return asyncio.run(
        _check_lines(settings, bundle, _lines(text), at, live=args.data_dir is not None)
    )


def read_text(name: str, errors: str = "strict") -> str:
    """A file's text, or standard input's for '-', as UTF-8 (one-line errors)."""
    return _read_stdin(errors) if name == "-" else _read(name, errors)


def _read(name: str, errors: str = "strict") -> str:
    try:
        return Path(name).read_bytes().decode("utf-8", errors)
    except OSError as exc:
        raise GatewayError(f"{name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise GatewayError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _read_stdin(errors: str = "strict") -> str:
    """Standard input as UTF-8, decoded here so that other bytes give the same
    one-line error as a file (the stream's own decoding raises mid-read)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin.read()
    raw: bytes = buffer.read()
    try:
        return raw.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise GatewayError(f"standard input: not UTF-8 text (byte {exc.start})") from None


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    stripped = text.strip()
    # One message over several lines; not one with bytes that are not UTF-8,
    # whose lines then answer each for itself.
    if stripped.startswith("{") and "\n" in stripped and not _UNDECODED.search(stripped):
        try:
            json.loads(stripped)  # one pretty-printed message
            yield 1, stripped
            return
        except (ValueError, RecursionError):  # deep nesting: each line answers for itself
            pass
    # Lines end at LF (or CRLF) alone: U+2028 and the other breaks that
    # str.splitlines knows are characters a JSON string may hold. Blank lines
    # count too: one answer per line.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the last line's own end
    for number, line in enumerate(lines, 1):
        yield number, line.removesuffix("\r")


def _utf8(line: str) -> bytes:
    """A line of `gateway check`'s input as read, or InputError where it held
    bytes that are not UTF-8 (kept as lone surrogates by surrogateescape)."""
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError as exc:
        at = len(line[: exc.start].encode("utf-8", "surrogateescape"))
        raise InputError(f"not UTF-8 text (byte {at} of the line)") from None


def _parsed_line(raw: bytes) -> CheckRequest:
    """The message of a line; its errors speak of the line (the HTTP API's, of
    the request's body, which here would read like the message's `body` field)."""
    from gateway.adapters.native import CheckRequest, decode_json, parse_native

    try:
        return parse_native(decode_json(raw), CheckRequest)
    except InputError as exc:
        if not str(exc).startswith("the body "):
            raise
        raise InputError(str(exc).replace("the body ", "the line ", 1), exc.fields) from None


def _parse_at(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(f"--at: '{text}' is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise GatewayError(f"--at: '{text}' needs a time zone offset, e.g. {text}Z")
    from gateway.adapters.native import EARLIEST_AT, LATEST_AT

    # The range a message's own "at" is held to: near datetime's limits the
    # conversion to UTC and the rules' look-ahead overflow.
    if not EARLIEST_AT <= at < LATEST_AT:
        raise GatewayError(f"--at: '{text}' must be from 1970-01-01T00:00:00Z to before 9000")
    return at.astimezone(UTC)


async def _check_lines(
    settings: Settings,
    bundle: Bundle,
    lines: Iterator[tuple[int, str]],
    at: datetime | None,
    live: bool,
) -> int:
    from gateway.adapters.native import to_message
    from gateway.audit.memory import MemoryTrail
    from gateway.clock import SystemClock
    from gateway.model import Channel, Code, Reason
    from gateway.policy.holder import Policies
    from gateway.runtime import audit_key, open_store, start
    from gateway.store.base import Store
    from gateway.store.memory import MemoryStore
    from gateway.store.sqlite import SqliteStore

    store: Store | None = None  # shared mode: the Redis store of the config
    if live and not settings.shared and not (settings.data_dir / "state.db").is_file():
        # Checked against nothing, an opted-out recipient would pass: refused.
        raise GatewayError(
            f"{settings.data_dir}: no gateway state here (state.db); give the --data-dir"
            " the gateway serves from"
        )
    if not settings.shared:
        store = SqliteStore(settings.data_dir / "state.db") if live else MemoryStore()
    else:
        store = await open_store(settings)
        try:  # unreachable: one line, not the server's "refused until it answers"
            await audit_key(settings, store)
        except StoreUnavailable as exc:
            await store.close()
            raise GatewayError(f"the shared store is unreachable ({exc})") from None
        except GatewayError:
            await store.close()
            raise
    rt = await start(
        settings,
        store=store,
        trail=MemoryTrail(),
        clock=SystemClock(),
        policies=Policies.fixed(bundle),
    )
    route = settings.native_route()
    failed = 0
    try:
        for number, line in lines:
            try:
                if not line.strip():
                    raise InputError("an empty line, not a message")
                raw = _utf8(line)
                if len(raw) > settings.max_body_bytes:  # as the HTTP API refuses it (413)
                    raise InputError(
                        f"the line is over the {settings.max_body_bytes} byte limit of a message"
                        " (max_body_bytes)"
                    )
                item = _parsed_line(raw)
                head = {
                    "route": route.name if route else "native",
                    "sender": item.sender or (route.default_sender if route else None) or "default",
                    "category": (
                        item.category or (route.default_category if route else None) or "marketing"
                    ).lower(),
                }
                when = item.at.astimezone(UTC) if item.at else at
                try:
                    message = to_message(item, **head)
                except InvalidRecipient as exc:
                    # As POST /v1/check answers: a decision rejecting the recipient.
                    reason = Reason("recipient", Code.INVALID_RECIPIENT, str(exc))
                    unparsed = head | {"channel": Channel(item.channel), "address": item.to}
                    refused = await rt.gateway.refuse_unparsed(
                        unparsed, reason, record=False, at=when
                    )
                    print(json_line(refused.to_json()))
                    continue
                decision = await rt.gateway.check(message, when)
                print(json_line(decision.to_json()))
            except InputError as exc:
                failed += 1
                print(json_line({"line": number, "error": str(exc)}))
    finally:
        await rt.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
