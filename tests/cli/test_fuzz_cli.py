"""Property tests of the command line's bad-input contract: whatever the config
file, the environment, the JSON lines or the policy test file hold, `gateway`
answers or says what is wrong in one line with exit code 2, never a traceback,
and leaves no data folder behind for a config it refuses."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cli import main
from tests.conftest import REPO

POLICIES = str(REPO / "policies")
REFUSED = re.compile(r"the (policy bundle|test file) was refused: (\d+) problem\(s\)")
BOUNDED = settings(max_examples=120, deadline=None, derandomize=True)


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def gateway(
    argv: list[str], cwd: Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`main` as the command runs it; any exception escaping it is a traceback."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {**clean, **(env or {})}, clear=True),
        mock.patch.object(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")),
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_refused_in_one_line(err: str) -> None:
    assert "Traceback" not in err and 'File "' not in err
    lines = err.splitlines()
    if lines and (refused := REFUSED.fullmatch(lines[-1])):  # each problem, then this
        assert len(lines) == int(refused[2]) + 1, err
        return
    assert len(lines) == 1 and lines[0].startswith("gateway: "), err


odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["", "a\nb", "\x07", "\u202e", "-1", "1e999", "sandbox", "ftp://x", "http://",
         "redis://[", "redis://h:port/0", "redis://h:99999/0", "unix://", "0" * 64, "xyz"]
    ),
)  # fmt: skip
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
KEYS = [
    "host", "port", "policies", "packs", "store", "redis_prefix", "redis_timeout", "redis_tls",
    "data_dir", "synchronous_full", "audit", "routes", "senders", "api_keys", "max_body_bytes",
    "idempotency_ttl", "upstream_connect_timeout", "busy_poll_us", "unknown",
]  # fmt: skip
routes = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["native", "native", "a b", ""]),
            "adapter": st.sampled_from(["native", "twilio", "smtp"]),
            "upstream": st.sampled_from(["sandbox", "https://x.example", "ftp://x", "http"]),
        }
    ),
    max_size=3,
)
configs = st.dictionaries(st.sampled_from(KEYS), odd_values, max_size=3) | st.fixed_dictionaries(
    {"routes": routes}
)


def dumped(config: dict[str, Any]) -> bytes:
    return yaml.safe_dump(config, allow_unicode=True).encode("utf-8", "surrogatepass")


@BOUNDED
@given(configs.map(dumped) | st.binary(max_size=40))
def test_any_config_file_is_loaded_or_refused_in_one_line(content: bytes) -> None:
    with folder() as cwd:
        (cwd / "gateway.yaml").write_bytes(content)
        code, _, err = gateway(["policy", "check", POLICIES, "--config", "gateway.yaml"], cwd)
        assert code in (0, 2)
        if code == 2:
            assert_refused_in_one_line(err)
        assert [p.name for p in cwd.iterdir()] == ["gateway.yaml"]


env_names = st.sampled_from(
    ["GATEWAY_PORT", "GATEWAY_PACKS", "GATEWAY_STORE", "GATEWAY_REDIS_URL", "GATEWAY_ROUTES",
     "GATEWAY_AUDIT_KEY", "GATEWAY_REDIS_TLS_VERIFY", "GATEWAY_API_KEYS", "GATEWAY_SENDERS",
     "GATEWAY_AUDIT", "GATEWAY_CONFIG"]
)  # fmt: skip
env_values = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=16
) | st.sampled_from(
    ["[", "{a: [}", "[{name: x}]", "[!!float x]", "[2001-13-01]", "{? [a]: b}", "redis://[",
     "[" * 2000, "99999", "/no/such/file"]
)  # fmt: skip


@BOUNDED
@given(
    st.dictionaries(env_names, env_values, max_size=3),
    st.sampled_from(["", "audit: 5\n", "audit:\n", "redis_tls: []\n", "senders: 3\n"]),
)
def test_any_environment_override_is_taken_or_refused_in_one_line(
    env: dict[str, str], config: str
) -> None:
    with folder() as cwd:
        (cwd / "gateway.yaml").write_text(config)
        code, _, err = gateway(
            ["policy", "check", POLICIES, "--config", "gateway.yaml"], cwd, env=env
        )
        assert code in (0, 2)
        if code == 2:
            assert_refused_in_one_line(err)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
messages = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(["sms", "email", "fax"]),
        "to": st.sampled_from(["+12125550100", "a@b.example", "12", ""]),
        "body": st.text(max_size=20),
    },
    optional={
        "at": st.sampled_from(["2026-06-02T11:00:00-04:00", "2026-06-02T11:00:00", "soon"]),
        "category": st.sampled_from(["marketing", "transactional", ""]),
        "extra": json_values,
    },
)
lines = st.one_of(
    messages.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=20).map(lambda text: " ".join(text.splitlines())),
    st.sampled_from(
        ['{"channel": "sms", "to": "+12125550100", "body": "\\ud800"}', '{"\\udfff": 1}',
         "{" + '"a":{' * 3000, "[" * 3000, "1" * 5000, "{broken"]
    ),
)  # fmt: skip


@BOUNDED
@given(st.lists(lines, min_size=1, max_size=4), st.binary(max_size=3))
def test_check_answers_every_line_or_refuses_the_input_in_one_line(
    items: list[str], tail: bytes
) -> None:
    raw = "\n".join(items).encode("utf-8") + b"\n" + tail
    with folder() as cwd:
        code, out, err = gateway(["check", "--policies", POLICIES, "-"], cwd, stdin=raw)
    # Bytes that are not UTF-8 make an error of their line only.
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    assert code in (0, 1) and err == ""
    answers = [json.loads(line) for line in out.splitlines()]
    numbers = list(range(1, len(text.splitlines()) + 1))  # blank lines answer too
    if len(answers) == 1 and "decision" in answers[0]:
        return  # the input was one pretty-printed message
    assert [a.get("line", n) for a, n in zip(answers, numbers, strict=True)] == numbers
    assert all("decision" in a or set(a) == {"line", "error"} for a in answers)


expects = st.fixed_dictionaries(
    {"decision": st.sampled_from(["allow", "reject", "defer"]) | json_values},
    optional={"rule": st.sampled_from(["len", "unknown-rule"]), "code": st.text(max_size=4)},
)
cases = st.fixed_dictionaries(
    {
        "name": st.text(max_size=8),
        "at": st.sampled_from(
            ["2026-06-02T11:00:00Z", "2026-06-02T11:00:00", "9999-12-31T23:59:59-14:00", "soon"]
        ),
        "message": messages,
        "expect": expects,
    },
    optional={
        "opt_outs": st.lists(
            st.fixed_dictionaries(
                {"list": st.sampled_from(["global", ""]), "address": st.sampled_from(["12", "x"])}
            ),
            max_size=1,
        ),
        "unknown": json_values,
    },
)


@BOUNDED
@given(
    st.fixed_dictionaries({"cases": st.lists(cases, max_size=3)}).map(dumped)
    | st.fixed_dictionaries({"cases": json_values}).map(dumped)
    | json_values.map(dumped)
    | st.binary(max_size=30)
)
def test_policy_test_reports_failures_or_refuses_the_file_in_one_line(content: bytes) -> None:
    with folder() as root:
        (root / "a.yaml").write_text(
            "rules:\n  - id: len\n    type: content_length\n    max_chars: 3\n"
        )
        (root / "a.test.yaml").write_bytes(content)
        code, out, err = gateway(["policy", "test", str(root)], root)
    if code == 2:
        assert out == ""
        assert_refused_in_one_line(err)
        return
    summary = (err or out).splitlines()[-1]
    match = re.fullmatch(r"(\d+) passed, (\d+) failed", summary)
    assert match is not None, out + err
    failures = out.splitlines()[: -1 if code == 0 else None]
    assert code == (1 if failures else 0) and len(failures) == int(match[2])


# -- opt-out and audit commands ---------------------------------------------------

csv_rows = st.lists(
    st.lists(st.one_of(st.text(max_size=14), st.sampled_from(["address", "note", "+12125550100"])),
             max_size=3).map(",".join),
    max_size=5,
).map(lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass"))  # fmt: skip


@BOUNDED
@given(csv_rows | st.binary(max_size=40))
def test_opt_out_import_takes_the_file_or_refuses_it_in_one_line(content: bytes) -> None:
    with folder() as cwd:
        code, out, err = gateway(
            ["opt-out", "import", "--data-dir", "data", "global", "-"], cwd, content
        )
        if code == 0:
            assert re.fullmatch(r"\d+ rows: \d+ added to global, \d+ already on it\n", out)
        else:
            assert code == 2
            assert_refused_in_one_line(err)


_TRAIL: list[Path] = []


def a_trail() -> Path:
    """A data folder with a trail of two decisions, made once for the module."""
    if not _TRAIL:
        from starlette.testclient import TestClient

        from gateway.app import create_app
        from gateway.settings import load_settings

        data = Path(tempfile.mkdtemp()) / "data"
        settings = load_settings(None, {"GATEWAY_DATA_DIR": str(data)}, policies=REPO / "policies")
        with TestClient(create_app(settings, run_scheduler=False)) as client:
            for to in ("+12125550100", "+12125550101"):
                client.post("/v1/messages", json={"channel": "sms", "to": to, "body": "Hi"})
        _TRAIL.append(data)
    return _TRAIL[0]


@BOUNDED
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["--recipient", "--sender", "--rule", "--code", "--since", "--until"]),
            odd_scalars.map(str),
        ),
        max_size=3,
    )
)
def test_audit_query_answers_or_refuses_in_one_line(filters: list[tuple[str, str]]) -> None:
    argv = ["audit", "query", "--data-dir", str(a_trail())]
    argv += [f"{flag}={value}" for flag, value in filters]
    with folder() as cwd:
        code, out, err = gateway(argv, cwd)
    if code == 0:
        assert all(json.loads(line)["decision_id"] for line in out.splitlines())
    else:
        assert code == 2
        assert_refused_in_one_line(err)
