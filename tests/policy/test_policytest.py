"""`gateway policy test` files: a mistake in one is refused when it loads, naming
the file, the line and the case; it is not a failing case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import InputError
from gateway.policy.loader import load_bundle
from gateway.policytest import case_files, run_folder

Writer = Callable[..., Path]

RULES = "rules:\n  - {id: len, type: content_length, max_chars: 3}\n"
AT = "2026-06-02T11:00:00Z"
SMS = "{channel: sms, to: '+12125550100', body: 'hello'}"


async def refusal(root: Path) -> str:
    """The one-line error that `policy test` stops with, the folder left out."""
    with pytest.raises(InputError) as caught:
        await run_folder(load_bundle(root), root)
    return str(caught.value).replace(f"{root}/", "")


def case(expect: str, name: str = "long", at: str = AT) -> str:
    return f"  - name: {name}\n    at: '{at}'\n    message: {SMS}\n    expect: {expect}\n"


@pytest.mark.parametrize(
    ("expect", "problem"),
    [
        (
            "{decision: maybe}",
            "expect.decision: input should be 'allow', 'reject' or 'defer', got 'maybe'",
        ),
        ("{decision: reject, code: too_long}", "expect.code: input should be 'opted_out', "),
        ("{decision: reject, rule: lenght}", "expect.rule: 'lenght' is not a rule of the bundle"),
        (
            "{decision: allow, code: content_too_long}",
            "expect.code: is for decision reject or defer (an allowed message has no reasons)",
        ),
        (
            "{decision: reject, deliver_at: '2026-06-03T08:00:00Z'}",
            "expect.deliver_at: is for decision defer only",
        ),
    ],
)
async def test_expect_is_checked_when_the_file_loads(
    write_policies: Writer, expect: str, problem: str
) -> None:
    root = write_policies({"a.yaml": RULES, "a.test.yaml": "cases:\n" + case(expect)})
    assert (await refusal(root)).startswith(f"a.test.yaml:5: long: {problem}")


async def test_the_invalid_recipient_reason_may_be_expected(write_policies: Writer) -> None:
    cases = (
        "cases:\n  - name: bad number\n    at: '2026-06-02T11:00:00Z'\n"
        "    message: {channel: sms, to: '+1 555', body: 'hi'}\n"
        "    expect: {decision: reject, code: invalid_recipient, rule: recipient}\n"
    )
    root = write_policies({"a.yaml": RULES, "a.test.yaml": cases})
    assert await run_folder(load_bundle(root), root) == (1, [])


async def test_a_case_file_error_names_its_line_and_case(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": RULES,
            "a.test.yaml": "cases:\n"
            + case("{decision: reject}", name="first")
            + case("{decision: reject}", name="no offset", at="2026-06-02T11:00:00")
            + "  - name: third\n",
            "b.test.yaml": "",
            "c.test.yaml": "- 1\n",
            "d.test.yaml": "cases:\n  - name: x\n    name: y\n",
        }
    )
    assert await refusal(root) == (
        "a.test.yaml:7: no offset: at: give a time zone offset, e.g. 2026-06-02T11:00:00-04:00"
        " (and 3 more problems in this file)"
    )
    (root / "a.test.yaml").unlink()
    assert await refusal(root) == "b.test.yaml:1: the file is empty; it needs a 'cases:' list"
    (root / "b.test.yaml").unlink()
    assert await refusal(root) == "c.test.yaml:1: the file must be a mapping with a 'cases:' list"
    (root / "c.test.yaml").unlink()
    assert await refusal(root) == "d.test.yaml:3: 'name' is given twice"


async def test_test_files_end_in_test_yaml_or_test_yml_in_any_case(
    write_policies: Writer,
) -> None:
    cases = "cases:\n" + case("{decision: reject, code: content_too_long, rule: len}")
    root = write_policies(
        {
            "a.yaml": RULES,
            "a.test.yaml": cases,
            "b.test.yml": cases,
            "C.TEST.YAML": cases,
            ".#d.test.yaml": "not: [valid",
            # A pack's cases test the pack's rules alone.
            "packs/p/rules.yml": RULES.replace("id: len", "id: p.len"),
            "packs/p/p.Test.Yml": cases.replace("rule: len", "rule: p.len"),
        }
    )
    names = [str(path.relative_to(root)) for path in case_files(root)]
    assert names == ["C.TEST.YAML", "a.test.yaml", "b.test.yml", "packs/p/p.Test.Yml"]
    assert await run_folder(load_bundle(root), root) == (4, [])


async def test_a_cases_messages_and_addresses_are_checked_when_the_file_loads(
    write_policies: Writer,
) -> None:
    # Mistakes in messages are the file's, every one at once, in line order;
    # an unknown expected rule among them too.
    cases = (
        "cases:\n"
        "  - name: colour\n"
        f"    at: '{AT}'\n"
        "    history:\n"
        "      - {at: '" + AT + "', message: {channel: sms, to: '12125550100', body: a}}\n"
        "    opt_outs: [{list: global, address: '+1'}]\n"
        "    message: {channel: fax, to: '+12125550100', body: hi, colour: red}\n"
        "    expect: {decision: reject, rule: nope}\n"
        "  - name: mail\n"
        f"    at: '{AT}'\n"
        "    message: {channel: email, to: a@example.com, body: 123}\n"
        "    expect: {decision: allow}\n"
    )
    root = write_policies({"a.yaml": RULES, "a.test.yaml": cases})
    with pytest.raises(InputError) as caught:
        await run_folder(load_bundle(root), root)
    problems = [p.replace(f"{root}/", "") for p in caught.value.problems]  # type: ignore[attr-defined]
    assert problems == [
        "a.test.yaml:5: colour: history[0].message.to: '12125550100' is not a phone number in"
        " international form (+ and country code)",
        "a.test.yaml:6: colour: opt_outs[0].address: '+1' is not a phone number in"
        " international form (+ and country code)",
        "a.test.yaml:7: colour: message.channel: input should be 'sms', 'email' or 'push',"
        " got 'fax'",
        "a.test.yaml:7: colour: message.colour: unknown field 'colour' (known: channel, to,"
        " body, from, subject, title, category, sender, tags, recipient_timezone,"
        " idempotency_key)",
        "a.test.yaml:8: colour: expect.rule: 'nope' is not a rule of the bundle",
        "a.test.yaml:11: mail: message.body: input should be a valid string, got 123",
    ]
