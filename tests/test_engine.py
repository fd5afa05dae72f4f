"""Every rule type through the engine: pass, fail, monitor and skip, with the
detail keys the contract promises. In memory, with a fixed clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.native import NativeMessage, to_message
from gateway.audit.memory import MemoryTrail
from gateway.clock import FixedClock
from gateway.model import Decision
from gateway.policy.loader import load_bundle
from gateway.recipients import Pseudonymizer, hint
from gateway.service import Gateway, ms
from gateway.store.base import OptOutEntry
from gateway.store.memory import MemoryStore

NOON_NY = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)  # 12:00 in New York


class Harness:
    def __init__(self, root: Path) -> None:
        bundle = load_bundle(root)
        self.store = MemoryStore()
        self.clock = FixedClock(NOON_NY)
        self.pseudonyms = Pseudonymizer(b"k" * 32)
        self.gateway = Gateway(
            bundle=lambda: bundle,
            store=self.store,
            trail=MemoryTrail(),
            pseudonyms=self.pseudonyms,
            clock=self.clock,
        )

    async def check(self, **fields: Any) -> Decision:
        data = {
            "channel": "sms",
            "to": "+12125550100",
            "body": "Hello",
            "category": "marketing",
        } | fields
        item = NativeMessage.model_validate(data)
        message = to_message(
            item,
            route="native",
            sender=item.sender or "acme",
            category=item.category or "marketing",
        )
        return await self.gateway.check(message)

    async def count(self, **fields: Any) -> None:
        """A send that went out now (counted against caps)."""
        from gateway import engine

        data = {"channel": "sms", "to": "+12125550100", "body": "x", "category": "marketing"}
        item = NativeMessage.model_validate(data | fields)
        message = to_message(item, route="native", sender="acme", category="marketing")
        plan = engine.plan(
            self.gateway._bundle(), message, self.pseudonyms.token(message.recipient.address)
        )
        await self.store.fetch(
            plan.request, ms(self.clock.now()), count=True, send_id=f"s{ms(self.clock.now())}"
        )


@pytest.fixture
def harness(write_policies: Callable[..., Path]) -> Callable[[str], Harness]:
    return lambda rules: Harness(write_policies({"r.yaml": rules}))


def result(decision: Decision, rule: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(t for t in decision.to_json()["trace"] if t["rule"] == rule)
    return entry


async def test_content_length_names_the_character_that_forced_ucs2(
    harness: Callable[[str], Harness],
) -> None:
    h = harness("rules:\n  - {id: len, type: content_length, max_segments: 1}\n")
    ok = await h.check(body="x" * 160)
    assert result(ok, "len") == {
        "rule": "len",
        "type": "content_length",
        "result": "pass",
        "detail": {"field": "body", "chars": 160, "bytes": 160, "encoding": "GSM-7", "segments": 1},
    }
    curly = await h.check(body="It’s " + "x" * 70)
    detail = result(curly, "len")["detail"]
    assert detail["encoding"] == "UCS-2" and detail["segments"] == 2
    assert detail["non_gsm"][0] == {"offset": 2, "char": "’"}
    assert curly.reasons[0].message == (
        "body is 2 segments (UCS-2: '’' at 2 is not in GSM-7), over the 1 allowed"
    )


async def test_content_length_on_other_fields_and_channels(
    harness: Callable[[str], Harness],
) -> None:
    h = harness(
        "rules:\n  - {id: subj, type: content_length, field: subject, max_chars: 10}\n"
        "  - {id: bytes, type: content_length, field: title, max_bytes: 6}\n"
    )
    mail = await h.check(channel="email", to="a@example.com", subject="x" * 11, body="b")
    assert result(mail, "subj")["result"] == "fail"
    assert result(mail, "bytes")["result"] == "skip"  # an email has no title
    push = await h.check(channel="push", to="token-abc", title="héllo", body="b")
    assert result(push, "bytes")["detail"]["bytes"] == 6
    assert result(push, "bytes")["result"] == "pass"


async def test_banned_terms_report_term_and_offset(harness: Callable[[str], Harness]) -> None:
    h = harness("rules:\n  - {id: ban, type: banned_terms, terms: [free money, 稳赚不赔]}\n")
    hit = await h.check(body="Get FREE   money now")
    assert result(hit, "ban")["detail"] == {"field": "body", "term": "free money", "offset": 4}
    assert hit.reasons[0].code.value == "banned_term"
    cjk = await h.check(body="本产品稳赚不赔！")
    assert result(cjk, "ban")["detail"]["term"] == "稳赚不赔"
    assert result(cjk, "ban")["detail"]["offset"] == 3
    clean = await h.check(body="freedom of money")
    assert result(clean, "ban")["result"] == "pass"


async def test_required_text_any_and_all(harness: Callable[[str], Harness]) -> None:
    h = harness(
        "rules:\n  - {id: any, type: required_text, any_of: [回T退订, 拒收请回复R]}\n"
        "  - {id: all, type: required_text, all_of: [STOP, HELP]}\n"
    )
    d = await h.check(body="Sale! 拒收请回复R. Reply STOP to opt out")
    assert result(d, "any")["result"] == "pass"
    assert result(d, "any")["detail"]["term"] == "拒收请回复R"
    assert result(d, "all")["result"] == "fail"
    assert result(d, "all")["detail"]["missing"] == ["HELP"]
    assert d.reasons[-1].message == "body must contain all of: 'HELP'"


async def test_time_window_detail_and_defer(harness: Callable[[str], Harness]) -> None:
    h = harness(
        "rules:\n  - id: quiet\n    type: time_window\n    allow: {hours: '08:00-21:00'}\n"
        "    action: defer\n"
    )
    h.clock.set(datetime(2026, 6, 3, 2, 0, tzinfo=UTC))  # 22:00 in New York
    d = await h.check()
    assert result(d, "quiet")["detail"] == {
        "zones": ["America/New_York"],
        "local": "22:00",
        "open": False,
        "next_open": "2026-06-03T12:00:00Z",
    }
    assert d.decision.value == "defer"
    assert d.deliver_at == datetime(2026, 6, 3, 12, 0, tzinfo=UTC)


async def test_time_window_with_unknown_zone_is_outside(harness: Callable[[str], Harness]) -> None:
    h = harness("rules:\n  - {id: quiet, type: time_window, allow: {hours: '08:00-21:00'}}\n")
    d = await h.check(channel="email", to="a@example.com", subject="s")
    assert result(d, "quiet")["result"] == "fail"
    assert result(d, "quiet")["detail"]["zones"] == []
    assert d.decision.value == "reject"


async def test_time_window_fallback_zone(harness: Callable[[str], Harness]) -> None:
    h = harness(
        "rules:\n  - {id: quiet, type: time_window, allow: {hours: '08:00-21:00'},"
        " fallback_timezone: Europe/Paris}\n"
    )
    d = await h.check(channel="email", to="a@example.com", subject="s")  # 18:00 in Paris
    assert result(d, "quiet")["detail"]["zones"] == ["Europe/Paris"]
    assert result(d, "quiet")["result"] == "pass"


async def test_opt_out_lists_with_placeholders(harness: Callable[[str], Harness]) -> None:
    h = harness("rules:\n  - {id: opt, type: opt_out, lists: [global, 'sender:{sender}']}\n")
    token = h.pseudonyms.token("+12125550100")
    await h.store.opt_out_put(OptOutEntry("sender:acme", token, hint("+12125550100"), 0))
    d = await h.check()
    assert result(d, "opt")["detail"]["list"] == "sender:acme"
    other = await h.check(sender="globex")
    assert result(other, "opt")["result"] == "pass"


async def test_consent_needs_the_recipient_on_one_of_its_lists(
    harness: Callable[[str], Harness],
) -> None:
    h = harness(
        "rules:\n  - {id: opt-in, type: consent, lists: ['consent:{sender}', consent:all]}\n"
        "  - {id: watch, type: consent, lists: [double-opt-in], action: monitor}\n"
    )
    refused = await h.check()
    assert refused.decision.value == "reject"
    assert [(r.rule, r.code.value) for r in refused.reasons] == [("opt-in", "no_consent")]
    assert result(refused, "opt-in")["detail"] == {"lists": ["consent:acme", "consent:all"]}
    assert refused.reasons[0].message == "no consent on record (consent:acme or consent:all)"
    token = h.pseudonyms.token("+12125550100")
    await h.store.opt_out_put(OptOutEntry("consent:all", token, hint("+12125550100"), 0))
    allowed = await h.check()
    assert allowed.decision.value == "allow"
    assert result(allowed, "opt-in")["detail"]["list"] == "consent:all"
    assert result(allowed, "watch")["result"] == "monitor"  # recorded, never enforced
    assert (await h.check(to="+12125550101")).decision.value == "reject"  # someone else


async def test_frequency_cap_keys_and_windows(harness: Callable[[str], Harness]) -> None:
    h = harness(
        "rules:\n  - id: cap\n    type: frequency_cap\n"
        "    limits: [{count: 2, per: 1h}, {count: 3, per: 1d}]\n"
    )
    await h.count()
    h.clock.advance(timedelta(minutes=30))
    await h.count()
    capped = await h.check()
    assert result(capped, "cap")["detail"]["count"] == 2
    assert capped.retry_at == NOON_NY + timedelta(hours=1, milliseconds=1)
    h.clock.set(NOON_NY + timedelta(hours=1))  # the first send is exactly 1 h old: still inside
    assert (await h.check()).decision.value == "reject"
    h.clock.set(NOON_NY + timedelta(hours=1, milliseconds=1))
    assert (await h.check()).decision.value == "allow"
    await h.count()
    h.clock.advance(timedelta(hours=2))
    day = await h.check()
    assert result(day, "cap")["detail"]["per"] == "1d"
    assert result(day, "cap")["detail"]["count"] == 3


async def test_when_several_windows_are_full_the_last_to_free_up_is_named(
    harness: Callable[[str], Harness],
) -> None:
    h = harness(
        "rules:\n  - id: cap\n    type: frequency_cap\n"
        "    limits: [{count: 2, per: 1h}, {count: 2, per: 1d}]\n"
    )
    await h.count()
    h.clock.advance(timedelta(minutes=30))
    await h.count()
    both = await h.check()  # both windows full: the day's frees up last
    assert both.retry_at == NOON_NY + timedelta(days=1, milliseconds=1)
    assert (result(both, "cap")["detail"]["per"], result(both, "cap")["detail"]["count"]) == (
        "1d",
        2,
    )
    assert both.reasons[0].message == "2 sends already in the last 1d (limit 2)"


async def test_match_unless_and_skip(harness: Callable[[str], Harness]) -> None:
    h = harness(
        "rules:\n  - id: ban\n    type: banned_terms\n    terms: [win]\n"
        "    match: {channel: [sms, push], tags: promo, country: US}\n"
        "    unless: {sender: trusted}\n"
    )
    assert result(await h.check(body="win", tags=["promo"]), "ban")["result"] == "fail"
    assert result(await h.check(body="win"), "ban")["result"] == "skip"
    assert (
        result(await h.check(body="win", tags=["promo"], sender="trusted"), "ban")["result"]
        == "skip"
    )
    assert (
        result(await h.check(body="win", tags=["promo"], to="+447911123456"), "ban")["result"]
        == "skip"
    )


async def test_monitor_never_decides(harness: Callable[[str], Harness]) -> None:
    h = harness(
        "rules:\n  - {id: cap, type: frequency_cap, limits: [{count: 1, per: 1h}],"
        " action: monitor}\n"
    )
    await h.count()
    d = await h.check()
    assert d.decision.value == "allow"
    assert result(d, "cap")["result"] == "monitor"
    assert result(d, "cap")["code"] == "frequency_capped"


async def test_push_payload_bytes(harness: Callable[[str], Harness]) -> None:
    h = harness("rules:\n  - {id: push, type: content_length, field: payload, max_bytes: 40}\n")
    small = await h.check(channel="push", to="token-1", title="Hi", body="é")
    assert result(small, "push")["detail"]["bytes"] == len('{"title": "Hi", "body": "é"}'.encode())
    big = await h.check(channel="push", to="token-1", title="Hi", body="x" * 40)
    assert result(big, "push")["result"] == "fail"
    sms_message = await h.check(body="x" * 100)
    assert result(sms_message, "push")["result"] == "skip"


async def test_time_window_answers_stay_exact_across_repeated_checks(
    harness: Callable[[str], Harness],
) -> None:
    h = harness("rules:\n  - {id: quiet, type: time_window, allow: {hours: '08:00-21:00'}}\n")
    at = [(0, 59, 30, "pass"), (1, 0, 0, "fail"), (0, 59, 59, "pass"), (1, 0, 0, "fail")]
    for hour, minute, second, expected in at:  # 20:59 and 21:00 in New York (UTC-4)
        h.clock.set(datetime(2026, 6, 3, hour, minute, second, tzinfo=UTC))
        assert result(await h.check(), "quiet")["result"] == expected
    paris = await h.check(recipient_timezone="Europe/Paris")  # 03:00 there: another answer
    assert result(paris, "quiet")["detail"]["zones"] == ["Europe/Paris"]
    assert result(paris, "quiet")["result"] == "fail"


async def test_what_rules_apply_is_worked_out_per_message_shape(
    harness: Callable[[str], Harness],
) -> None:
    """Applicability and list names are remembered per shape of message; a
    message that differs in one sender, country, tag or area code gets its own."""
    h = harness(
        "rules:\n"
        "  - {id: own-list, type: opt_out, lists: ['{sender}-{category}']}\n"
        "  - {id: florida, type: content_length, max_chars: 5, match: {area_code: '305'}}\n"
        "  - {id: tagged, type: content_length, max_chars: 5, match: {tags: vip}}\n"
        "  - {id: uk, type: content_length, max_chars: 5, unless: {country: US}}\n"
    )
    rules = ("florida", "tagged", "uk")
    base = {"sender": "acme", "to": "+13055550100", "body": "too long"}
    for change, lists, results in [
        ({}, ["acme-marketing"], ["fail", "skip", "skip"]),
        ({"sender": "beta"}, ["beta-marketing"], ["fail", "skip", "skip"]),
        ({"category": "alerts"}, ["acme-alerts"], ["fail", "skip", "skip"]),
        ({"to": "+12125550100"}, ["acme-marketing"], ["skip", "skip", "skip"]),
        ({"tags": ["vip"]}, ["acme-marketing"], ["fail", "fail", "skip"]),
        ({"to": "+447400123456"}, ["acme-marketing"], ["skip", "skip", "fail"]),
        ({"to": "+13055550199", "body": "short"}, ["acme-marketing"], ["pass", "skip", "skip"]),
    ]:
        decision = await h.check(**(base | change))
        assert result(decision, "own-list")["detail"]["lists"] == lists, change
        assert [result(decision, r)["result"] for r in rules] == results, change
    # Without area-code conditions, the country alone tells two numbers apart.
    by_country = harness(
        "rules:\n  - {id: uk, type: content_length, max_chars: 5, unless: {country: US}}\n"
    )
    assert (
        result(await by_country.check(to="+12125550100", body="too long"), "uk")["result"] == "skip"
    )
    assert (
        result(await by_country.check(to="+447400123456", body="too long"), "uk")["result"]
        == "fail"
    )


async def test_one_text_sent_to_many_gets_each_message_its_own_answer(
    harness: Callable[[str], Harness],
) -> None:
    """Answers that depend on the text alone are reused for the same text; a
    window still sees each recipient's zone, and another channel or another
    set of rules gets its own answer."""
    h = harness(
        "rules:\n"
        "  - {id: len, type: content_length, max_chars: 20}\n"
        "  - {id: ban, type: banned_terms, terms: [casino]}\n"
        "  - {id: stop, type: required_text, any_of: [STOP]}\n"
        "  - {id: vip-len, type: content_length, max_chars: 5, match: {tags: vip}}\n"
        "  - {id: quiet, type: time_window, allow: {hours: '08:00-21:00'}}\n"
    )
    text = "Casino night! STOP"
    new_york = await h.check(body=text, to="+12125550100")  # noon
    tokyo = await h.check(body=text, to="+81312345678")  # 01:00
    assert result(new_york, "quiet")["result"] == "pass"
    assert result(tokyo, "quiet")["result"] == "fail"
    for decision in (new_york, tokyo):
        assert result(decision, "ban")["detail"] == {"field": "body", "term": "casino", "offset": 0}
        assert result(decision, "stop")["detail"]["offset"] == 14
        assert result(decision, "len")["detail"]["segments"] == 1
    push = await h.check(channel="push", to="token-abc", body=text)
    assert "segments" not in result(push, "len")["detail"]
    vip = await h.check(body=text, tags=["vip"])
    assert result(vip, "vip-len")["result"] == "fail"
    other = await h.check(body="Reply STOP" + "!" * 20)
    assert result(other, "ban")["result"] == "pass"
    assert result(other, "len")["result"] == "fail"
