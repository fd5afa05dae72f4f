"""Text rules judge only the fields a message's channel has: SMS has a body,
email a subject as well, push a title; SMS segments mean something for SMS only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.model import Channel, Message, Recipient, RecipientKind, Result, RuleResult
from gateway.policy.loader import load_bundle
from gateway.rules import PureRule, TextCache

NOW = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)
PHONE = Recipient("+12125550100", RecipientKind.PHONE, "US")
MAIL = Recipient("a@example.com", RecipientKind.EMAIL)
DEVICE = Recipient("token-1", RecipientKind.TOKEN)

Check = Callable[..., dict[str, RuleResult]]


def checker(write_policies: Callable[..., Path], rules: str) -> Check:
    """`check(channel, **fields)`: each rule's result for such a message."""
    bundle = load_bundle(write_policies({"r.yaml": rules}))
    recipients = {Channel.SMS: PHONE, Channel.EMAIL: MAIL, Channel.PUSH: DEVICE}

    def check(channel: Channel, body: str = "Hello", **fields: str) -> dict[str, RuleResult]:
        texts = TextCache(Message(channel, recipients[channel], body, **fields))
        pure = [rule for rule in bundle.rules if isinstance(rule, PureRule)]
        return {rule.id: rule.check(texts, NOW) for rule in pure}

    return check


def test_required_text_skips_a_field_the_channel_does_not_have(
    write_policies: Callable[..., Path],
) -> None:
    check = checker(
        write_policies,
        "rules:\n"
        "  - {id: subject, type: required_text, field: subject, any_of: [Unsubscribe]}\n"
        "  - {id: title, type: required_text, field: title, any_of: [Acme]}\n",
    )
    for channel in (Channel.SMS, Channel.PUSH):
        assert check(channel)["subject"].result is Result.SKIP
    for channel in (Channel.SMS, Channel.EMAIL):
        assert check(channel, subject="Unsubscribe")["title"].result is Result.SKIP
    # A channel that has the field, and a message without it: the text is missing.
    no_subject = check(Channel.EMAIL)["subject"]
    assert no_subject.result is Result.FAIL
    assert no_subject.message == "subject must contain one of: 'Unsubscribe'"
    assert check(Channel.EMAIL, subject="News. Unsubscribe")["subject"].result is Result.PASS
    assert check(Channel.PUSH)["title"].result is Result.FAIL
    assert check(Channel.PUSH, title="Acme sale")["title"].result is Result.PASS


def test_segments_are_judged_on_sms_only(write_policies: Callable[..., Path]) -> None:
    check = checker(
        write_policies,
        "rules:\n"
        "  - {id: segments, type: content_length, max_segments: 1}\n"
        "  - {id: both, type: content_length, max_segments: 1, max_chars: 500}\n",
    )
    sms = check(Channel.SMS, "x" * 400)
    assert sms["segments"].message == "body is 3 segments, over the 1 allowed"
    assert sms["both"].message == "body is 3 segments, over the 1 allowed"
    mail = check(Channel.EMAIL, "x" * 400, subject="s")
    assert mail["segments"].result is Result.SKIP  # nothing left to judge
    assert mail["both"].result is Result.PASS
    assert mail["both"].detail == {"field": "body", "chars": 400, "bytes": 400}
    long_mail = check(Channel.EMAIL, "x" * 501, subject="s")
    assert long_mail["both"].message == "body is 501 characters, over the 500 allowed"
    assert check(Channel.PUSH, "x" * 400)["segments"].result is Result.SKIP
