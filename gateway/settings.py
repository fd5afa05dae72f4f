"""Configuration: one YAML file, every key overridable by `GATEWAY_<KEY>`.

Nested keys join with an underscore (`GATEWAY_AUDIT_KEY` sets `audit.key`);
`GATEWAY_REDIS_URL` sets `store`. The environment is passed in, never read at
import time, so tests inject their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError, one_line
from gateway.policy.schema import NAME, RULE_ID
from gateway.policy.yamlfile import YamlError, parse

DEFAULT_FILE = "gateway.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Route(Strict):
    name: Annotated[str, Field(pattern=RULE_ID)]
    adapter: Literal["native", "twilio", "sendgrid", "fcm"]
    upstream: str  # "sandbox" or an http(s) URL
    default_category: str | None = None
    default_sender: str | None = None

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str) -> str:
        if value != "sandbox" and not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' is neither 'sandbox' nor an http(s) URL")
        return value.rstrip("/") if value != "sandbox" else value


class Sender(Strict):
    """How drop-in requests are told apart: by a provider account in the path
    (a Twilio AccountSid, an FCM project id) or by the credential they carry,
    kept only as the sha256 hex of the secret (`ACxxx:token` for Twilio basic
    auth, the API key for SendGrid)."""

    default_category: str | None = None
    max_deferred: int = 10_000
    accounts: list[str] = []
    credentials: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = []


class TwilioInbound(Strict):
    """`POST /v1/inbound/twilio`, the webhook Twilio calls with each reply."""

    auth_token: Annotated[str, Field(min_length=1)]  # signs the webhooks (X-Twilio-Signature)
    url: Annotated[str, Field(pattern=r"^https?://")]  # the URL Twilio calls, as it calls it
    # Where a STOP goes: {sender} is the sender whose account (senders.*.accounts)
    # the reply came to, else the twilio route's default sender, else "default".
    list: str = "sender:{sender}"

    @field_validator("list")
    @classmethod
    def _list(cls, value: str) -> str:
        try:
            name = value.format(sender="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"'{value}' may hold {{sender}} and nothing else: {exc}") from None
        import regex

        if not regex.fullmatch(r"[A-Za-z0-9._:@-]{1,128}", name):
            raise ValueError(f"'{value}' does not make a list name (letters, digits, . _ : @ -)")
        return value


class Inbound(Strict):
    twilio: TwilioInbound | None = None


class Unsubscribe(Strict):
    """One-click unsubscribe links (RFC 8058): `POST /v1/unsubscribe`."""

    # The address mail clients reach POST /v1/unsubscribe at, as they reach it
    # (RFC 8058 asks for https); unset: the address the link request came to.
    url: Annotated[str, Field(pattern=r"^https?://[^?#]+$")] | None = None
    list: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")] = "global"


class Audit(Strict):
    key: str | None = None  # pseudonymization key; generated once and kept if unset
    store_bodies: bool = False
    # Records older than this are removed (gateway/audit/retention.py): a
    # duration such as 400d; unset, they are kept for ever.
    retention: str | None = None
    # One trail in PostgreSQL for every process (gateway/audit/postgres.py),
    # instead of each one's in its data folder; `table` is the table's name.
    url: Annotated[str, Field(pattern=r"^postgres(ql)?://")] | None = None
    table: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,40}$")] = "gateway_trail"

    @field_validator("retention")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            from gateway.policy.schema import parse_duration

            if parse_duration(value) < 86400:
                raise ValueError(f"'{value}' is shorter than a day")
        return value

    @property
    def retention_seconds(self) -> int | None:
        from gateway.policy.schema import parse_duration

        return None if self.retention is None else parse_duration(self.retention)


class RedisTls(Strict):
    """Client TLS for a `rediss://` store: the CA to trust (default: the
    system's), a client certificate and key when the server asks for one, and
    whether to verify the server's certificate and host name."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    verify: bool = True


class ApiKey(Strict):
    """A bearer key, kept as the sha256 hex of the secret. A sender key with
    `senders` may act for those senders only: send as them (its first one when
    a message names none), and see and cancel their held messages."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    role: Literal["sender", "auditor", "admin"]
    senders: list[Annotated[str, Field(pattern=NAME)]] | None = None

    @model_validator(mode="after")
    def _bound(self) -> ApiKey:
        if self.senders == []:  # read as "every sender", it would fail open
            raise ValueError("senders: name at least one, or leave it out to act for every sender")
        if self.senders:
            self.senders = list(dict.fromkeys(self.senders))  # one query each, once
        if self.senders and self.role != "sender":
            raise ValueError(f"senders: only a sender key acts for senders, not an {self.role} key")
        return self


class Settings(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    policies: Path = Path("policies")
    packs: list[str] = []
    store: str = "embedded"  # embedded | memory | redis://... | rediss://...
    redis_prefix: str = "gw:"
    redis_timeout: Annotated[float, Field(gt=0)] = 0.5  # seconds, per connect and per reply
    redis_tls: RedisTls = RedisTls()
    data_dir: Path = Path("gateway-data")
    synchronous_full: bool = False
    audit: Audit = Audit()
    inbound: Inbound = Inbound()
    unsubscribe: Unsubscribe = Unsubscribe()
    routes: list[Route] = [
        Route(name=name, adapter=name, upstream="sandbox")
        for name in ("native", "twilio", "sendgrid", "fcm")
    ]
    senders: dict[str, Sender] = {}
    api_keys: list[ApiKey] = []
    max_body_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    idempotency_ttl: Annotated[int, Field(ge=1)] = 24 * 3600  # seconds
    upstream_connect_timeout: float = 2.0
    upstream_read_timeout: float = 10.0
    scheduler_interval: float = 1.0
    tracing: bool = True  # a span per request; its trace id in every decision
    # Keep the event loop polling for this long after each message's request
    # starts or ends (0: off): lower latency at light load, for CPU (busypoll.py).
    busy_poll_us: Annotated[int, Field(ge=0, le=100_000)] = 0

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value in ("embedded", "memory"):
            return value
        if value.startswith(("redis://", "rediss://", "unix://")):
            # Checked now, so a malformed URL (a bad port, `redis://[`) is refused
            # with the config instead of failing when the store is first opened.
            from redis.asyncio.connection import parse_url

            try:
                parse_url(value)
            except ValueError as exc:
                raise ValueError(f"'{value}' is not a valid Redis URL: {exc}") from None
            return value
        raise ValueError(f"'{value}' is not embedded, memory or a redis:// URL")

    @field_validator("redis_tls", mode="before")
    @classmethod
    def _no_tls_options(cls, value: Any) -> Any:
        # `redis_tls: null` (as the README's example has it) means no options.
        return {} if value is None else value

    @field_validator("redis_tls")
    @classmethod
    def _tls_needs_rediss(cls, value: RedisTls, info: ValidationInfo) -> RedisTls:
        store = str(info.data.get("store", ""))
        if value != RedisTls() and not store.startswith("rediss://"):
            raise ValueError("TLS options need a rediss:// store URL")
        return value

    @field_validator("audit")
    @classmethod
    def _one_key_for_one_trail(cls, value: Audit, info: ValidationInfo) -> Audit:
        # Each embedded store generates a key of its own: processes sharing one
        # trail would each pseudonymize a recipient differently, and a lookup
        # by address would miss every other process's decisions.
        shared = str(info.data.get("store", "")).startswith(("redis://", "rediss://", "unix://"))
        if value.url and not value.key and not shared:
            raise ValueError(
                "a trail in PostgreSQL (url) needs a key (GATEWAY_AUDIT_KEY) that every"
                " process shares, unless the store is Redis, which keeps one for all"
            )
        return value

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def native_route(self) -> Route | None:
        return self.adapter_route("native")

    def adapter_route(self, adapter: str) -> Route | None:
        """The first route served by `adapter` (its path on the gateway is fixed)."""
        return next((r for r in self.routes if r.adapter == adapter), None)

    @property
    def shared(self) -> bool:
        return self.store.startswith(("redis://", "rediss://", "unix://"))


def load_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """File (explicit, GATEWAY_CONFIG, or ./gateway.yaml if present), then the
    environment, then keyword overrides (the command line)."""
    env = os.environ if environ is None else environ
    data = _read_file(path or _default_file(env))
    from_env = _apply_env(data, env)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)
        raise ConfigError(one_line("; ".join(_said(e, from_env) for e in first))) from None


def _said(error: Any, from_env: dict[tuple[str, ...], str]) -> str:
    """`where: what`, naming the environment variable a bad value came from,
    and without pydantic's "Value error, " before our own messages."""
    loc = tuple(str(part) for part in error["loc"])
    where = ".".join(loc)
    var = from_env.get(loc[:2]) or from_env.get(loc[:1])
    if var is not None:
        where = f"{var} ({where})"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


# Variables the gateway reads besides its settings, and prefixes of its tests'.
_OTHER_VARIABLES = frozenset({"GATEWAY_CONFIG", "GATEWAY_REDIS_URL", "GATEWAY_SETTINGS_JSON"})
_OTHER_PREFIXES = ("GATEWAY_TEST_", "GATEWAY_BENCH_")


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """GATEWAY_* variables that name no setting (a typo is otherwise silent)."""
    known = set(_OTHER_VARIABLES)
    for name, field in Settings.model_fields.items():
        known.add(f"GATEWAY_{name}".upper())
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            known.update(f"GATEWAY_{name}_{sub}".upper() for sub in nested.model_fields)
    return sorted(
        var
        for var in env
        if var.startswith("GATEWAY_") and var not in known and not var.startswith(_OTHER_PREFIXES)
    )


def _default_file(env: Mapping[str, str]) -> Path | None:
    if env.get("GATEWAY_CONFIG"):
        return Path(env["GATEWAY_CONFIG"])
    return Path(DEFAULT_FILE) if Path(DEFAULT_FILE).is_file() else None


def _read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        loaded = parse(text).data  # the policy files' parser: one-line errors with their line
    except YamlError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of keys")
    return loaded


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply the GATEWAY_* variables to `data`; returns which variable set each key."""
    used: dict[tuple[str, ...], str] = {}
    if env.get("GATEWAY_REDIS_URL"):
        data["store"] = env["GATEWAY_REDIS_URL"]
        used[("store",)] = "GATEWAY_REDIS_URL"
    for name, field in Settings.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            whole = env.get(f"GATEWAY_{name}".upper())
            if whole is not None:  # the whole section, {key: value, ...}
                data[name] = _scalar(f"GATEWAY_{name}".upper(), whole)
                used[(name,)] = f"GATEWAY_{name}".upper()
            for sub in nested.model_fields:
                var = f"GATEWAY_{name}_{sub}".upper()
                value = env.get(var)
                if value is None:
                    continue
                # `audit:` left empty in the file is an empty section; any other
                # non-mapping stays as it is, for validation to name it.
                if data.get(name) is None:
                    data[name] = {}
                if isinstance(data[name], dict):
                    data[name][sub] = _scalar(var, value)
                    used[(name, sub)] = var
            continue
        var = f"GATEWAY_{name}".upper()
        value = env.get(var)
        if value is not None:
            data[name] = _scalar(var, value)
            used[(name,)] = var
    return used


def _scalar(name: str, text: str) -> Any:
    """Plain text, except a value in [...] or {...}, read as YAML (lists, mappings)."""
    if not text.lstrip().startswith(("[", "{")):
        return text
    try:
        return parse(text).data
    except YamlError as exc:
        raise ConfigError(f"{name}: {exc}") from None
