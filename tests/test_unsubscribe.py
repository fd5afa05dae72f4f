"""Unsubscribe tokens and one-click bodies (RFC 8058), without a server."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import unsubscribe
from gateway.errors import InputError
from gateway.unsubscribe import Link

KEY = b"k" * 32


def test_a_token_carries_its_link_and_only_this_key_reads_it() -> None:
    link = Link("sender:acme", "ann@example.com")
    token = unsubscribe.token(KEY, link)
    assert unsubscribe.read_token(KEY, token) == link
    with pytest.raises(InputError, match="not an unsubscribe link of this gateway"):
        unsubscribe.read_token(b"other key" * 4, token)


def test_an_altered_token_is_refused() -> None:
    token = unsubscribe.token(KEY, Link("global", "ann@example.com"))
    payload, signature = token.split(".")
    other = unsubscribe.token(KEY, Link("global", "bob@example.com")).split(".")[0]
    for altered in (f"{other}.{signature}", token[:-2], f"{payload}.", token + ".x", "é" + token):
        with pytest.raises(InputError):
            unsubscribe.read_token(KEY, altered)


@given(st.text(max_size=300))
def test_any_text_is_a_link_or_one_clear_refusal(text: str) -> None:
    try:
        unsubscribe.read_token(KEY, text)
    except InputError as exc:
        assert exc.fields == {"token": "invalid"}


def multipart(fields: dict[str, str]) -> tuple[str, bytes]:
    """A multipart/form-data body as an HTTP client encodes it."""
    request = httpx.Request(
        "POST", "http://mail.test/", files={k: (None, v) for k, v in fields.items()}
    )
    return request.headers["content-type"], request.read()


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click", True),
        ("", b"List-Unsubscribe=One-Click", True),
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click\r\n", True),
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click\n", True),
        (*multipart({"List-Unsubscribe": "One-Click"}), True),
        (*multipart({"List-Unsubscribe": "One-Click", "other": "x"}), True),
        ("application/x-www-form-urlencoded", b"", False),
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=Later", False),
        ("application/x-www-form-urlencoded", b"\xff\xfe", False),
        (*multipart({"List-Unsubscribe": "No"}), False),
        ("multipart/form-data", b"List-Unsubscribe=One-Click", False),  # no boundary
        ("multipart/form-data; boundary=x", b"garbage", False),
    ],
)
def test_one_click_bodies(content_type: str, body: bytes, expected: bool) -> None:
    assert unsubscribe.is_one_click(content_type, body) is expected
