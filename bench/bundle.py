"""The benchmark's policy bundle, config and request body.

About twenty rules of every type, a banned-terms file of 10,000 terms, and
nothing that stops the benchmark's messages: caps far above what a run sends
to one recipient, a time window open all day, required text the body carries.
Every rule still runs its check on every message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench.content import synthetic_terms

TERM_COUNT = 10_000
SENDER = "acme"
# 100,000 distinct valid US numbers: +1 212 20x xxxx, the last five digits varied.
RECIPIENT_PREFIX = "+121220"
RECIPIENT_DIGITS = 5
BODY = (
    "Acme spring sale: 20% off running shoes and outdoor gear until Sunday at "
    "acme.example/sale - show this text in store. Reply STOP to opt out."
)

RULES: list[dict[str, Any]] = [
    # Opt-outs
    {
        "id": "global-opt-out",
        "type": "opt_out",
        "lists": ["global", "sender:{sender}"],
        "unless": {"category": "transactional"},
    },
    {"id": "channel-opt-out", "type": "opt_out", "lists": ["channel:{channel}"]},
    {
        "id": "category-opt-out",
        "type": "opt_out",
        "lists": ["category:{category}"],
        "match": {"category": ["marketing", "promotions"]},
    },
    # Caps that a benchmark run never reaches
    {
        "id": "marketing-sms-caps",
        "type": "frequency_cap",
        "match": {"channel": "sms", "category": "marketing"},
        "limits": [{"count": 1000, "per": "24h"}, {"count": 5000, "per": "7d"}],
        "key": "recipient",
    },
    {
        "id": "sender-recipient-cap",
        "type": "frequency_cap",
        "limits": [{"count": 1000, "per": "1h"}],
        "key": "sender_recipient",
    },
    {
        "id": "sender-throughput-cap",
        "type": "frequency_cap",
        "limits": [{"count": 100_000_000, "per": "1m"}],
        "key": "sender",
        "action": "monitor",
    },
    # Content length
    {
        "id": "sms-segments",
        "type": "content_length",
        "match": {"channel": "sms"},
        "max_segments": 6,
    },
    {
        "id": "sms-long-monitor",
        "type": "content_length",
        "match": {"channel": "sms"},
        "max_segments": 3,
        "action": "monitor",
    },
    {
        "id": "email-size",
        "type": "content_length",
        "match": {"channel": "email"},
        "max_bytes": 65536,
    },
    {
        "id": "push-payload-size",
        "type": "content_length",
        "match": {"channel": "push"},
        "field": "payload",
        "max_bytes": 4096,
    },
    {"id": "subject-length", "type": "content_length", "field": "subject", "max_chars": 200},
    # Banned terms
    {"id": "banned-terms", "type": "banned_terms", "terms_file": "terms/banned.txt"},
    {
        "id": "finance-claims",
        "type": "banned_terms",
        "terms": ["guaranteed returns", "risk-free investment", "double your money", "稳赚不赔"],
    },
    {
        "id": "watch-words",
        "type": "banned_terms",
        "terms": ["act now", "limited time only", "winner", "free money"],
        "action": "monitor",
    },
    # Required text
    {
        "id": "marketing-opt-out-instruction",
        "type": "required_text",
        "match": {"category": "marketing", "channel": "sms"},
        "any_of": ["Reply STOP", "Text STOP", "STOP to opt out"],
    },
    {
        "id": "cn-unsubscribe-instruction",
        "type": "required_text",
        "match": {"channel": "sms", "category": "marketing", "country": "CN"},
        "any_of": ["回T退订", "拒收请回复R", "退订回T"],
    },
    {
        "id": "brand-name-monitor",
        "type": "required_text",
        "any_of": ["Acme"],
        "action": "monitor",
    },
    # Time windows open all day, so nothing defers
    {
        "id": "us-marketing-hours",
        "type": "time_window",
        "match": {"channel": "sms", "category": "marketing", "country": "US"},
        "allow": {"hours": "00:00-24:00"},
        "action": "defer",
    },
    {
        "id": "weekday-monitor",
        "type": "time_window",
        "match": {"category": "marketing"},
        "allow": {
            "hours": "00:00-24:00",
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        },
        "action": "monitor",
    },
    {
        "id": "holiday-monitor",
        "type": "time_window",
        "match": {"category": "marketing", "country": "US"},
        "allow": {"hours": "00:00-24:00"},
        "exclude_holidays": False,
        "action": "monitor",
    },
]


def write_policies(folder: Path, term_count: int = TERM_COUNT) -> Path:
    """The bundle in `folder` (created): rule files and the terms file."""
    (folder / "terms").mkdir(parents=True, exist_ok=True)
    terms = synthetic_terms(term_count)
    (folder / "terms" / "banned.txt").write_text(
        "# Synthetic banned terms for the benchmark.\n" + "\n".join(terms) + "\n",
        encoding="utf-8",
    )
    (folder / "rules.yaml").write_text(
        yaml.safe_dump({"rules": RULES}, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return folder


def write_config(
    path: Path,
    *,
    port: int,
    policies: Path,
    data_dir: Path,
    upstream: str,
    store: str = "embedded",
    redis_prefix: str = "gw:",
    busy_poll_us: int = 0,
    audit_url: str | None = None,
    audit_table: str = "gateway_trail",
) -> Path:
    """A gateway.yaml: a native route to `upstream`, state in `store`, the
    trail in the data folder or (`audit_url`) in PostgreSQL."""
    config = {
        "host": "127.0.0.1",
        "port": port,
        "policies": str(policies),
        "store": store,
        "redis_prefix": redis_prefix,
        "data_dir": str(data_dir),
        "audit": {"key": "bench-pseudonymization-key"}
        | ({"url": audit_url, "table": audit_table} if audit_url else {}),
        "routes": [
            {
                "name": "native",
                "adapter": "native",
                "upstream": upstream,
                "default_category": "marketing",
            }
        ],
        # The deferred queue holds nothing in a run; a slow poll keeps it out of
        # the Redis round trips counted per message.
        "scheduler_interval": 30.0,
        "busy_poll_us": busy_poll_us,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def body_template(marker: str = "@N@", *, personal: bool = False) -> str:
    """The JSON request body with `marker` where the recipient's varying digits
    go; `personal`: in the text too (an order number), so that no two texts
    are alike, as in one-to-one messages rather than a campaign."""
    text = BODY.replace("20% off", f"#{marker}", 1) if personal else BODY
    message = {
        "channel": "sms",
        "to": RECIPIENT_PREFIX + marker,
        "body": text,
        "category": "marketing",
        "sender": SENDER,
    }
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def body(number: int, *, personal: bool = False) -> bytes:
    """One concrete request body (for clients other than wrk)."""
    digits = f"{number % 10**RECIPIENT_DIGITS:0{RECIPIENT_DIGITS}d}"
    return body_template(personal=personal).replace("@N@", digits).encode("utf-8")
