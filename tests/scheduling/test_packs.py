"""Rule packs: the shipped ones pass their own cases, a pack's cases run with
that pack switched on, and `area_code` matches the start of a national number."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import load_bundle
from gateway.policytest import run_folder
from tests.conftest import REPO

PACKS = ["us-tcpa", "us-states", "fr-marketing", "in-promotional", "cn-marketing"]


def test_the_shipped_packs_pass_their_cases() -> None:
    folder = REPO / "policies"
    count, failures = asyncio.run(run_folder(load_bundle(folder), folder))
    assert [str(f) for f in failures] == []
    packs = sorted(p.parent.name for p in folder.glob("packs/*/*.test.yaml"))
    assert packs == sorted(PACKS)
    assert count >= 45


def test_every_pack_loads_with_the_sample_bundle_and_the_others() -> None:
    bundle = load_bundle(REPO / "policies", PACKS)
    pack_rules = [r.id for r in bundle.rules if "." in r.id]
    assert all(r.split(".")[0] in PACKS for r in pack_rules)
    assert len(pack_rules) == 10


ABC_RULE = """
rules:
  - id: abc.no-night
    type: time_window
    match: {channel: sms}
    allow: {hours: "08:00-09:00"}
"""
CASE = """
cases:
  - name: {name}
    at: "2026-06-02T12:00:00-04:00"
    message: {{channel: sms, to: "+12125550100", body: "x"}}
    expect: {{decision: {decision}}}
"""


def test_a_packs_cases_run_with_that_pack_switched_on(
    write_policies: Callable[..., Path],
) -> None:
    folder = write_policies(
        {
            "base.yaml": "rules: []\n",
            "base.test.yaml": CASE.format(name="base alone allows", decision="allow"),
            "packs/abc/rules.yaml": ABC_RULE,
            "packs/abc/abc.test.yaml": CASE.format(name="the pack rejects", decision="reject"),
        }
    )
    count, failures = asyncio.run(run_folder(load_bundle(folder), folder))
    assert (count, failures) == (2, [])
    # Switched on for the whole folder, the base case sees the pack too.
    count, failures = asyncio.run(run_folder(load_bundle(folder, ["abc"]), folder))
    assert [f.case for f in failures] == ["base alone allows"]


def test_a_packs_cases_test_the_pack_alone(write_policies: Callable[..., Path]) -> None:
    """The folder's own rules would fail a pack's cases for reasons not the
    pack's: its cases run against its rules alone, switched on or not."""
    folder = write_policies(
        {
            "base.yaml": "rules:\n  - {id: stop, type: required_text, any_of: [Reply STOP]}\n",
            "packs/abc/rules.yaml": ABC_RULE,
            "packs/abc/abc.test.yaml": CASE.replace("12:00", "08:30").format(
                name="the pack allows", decision="allow"
            ),
        }
    )
    for packs in ([], ["abc"]):
        assert asyncio.run(run_folder(load_bundle(folder, packs), folder)) == (1, [])


def test_a_packs_cases_find_the_terms_file_it_shares(write_policies: Callable[..., Path]) -> None:
    """A pack may name a terms file of the policies folder's (`../../terms`):
    tested alone, it is still inside the folder."""
    folder = write_policies(
        {
            "base.yaml": "rules: []\n",
            "terms/finance.txt": "guaranteed returns\n",
            "packs/fin/rules.yaml": (
                "rules:\n  - {id: fin.claims, type: banned_terms,"
                " terms_file: ../../terms/finance.txt}\n"
            ),
            "packs/fin/fin.test.yaml": CASE.format(name="clean", decision="allow"),
        }
    )
    assert asyncio.run(run_folder(load_bundle(folder), folder)) == (1, [])


def test_area_code_must_be_digits(write_policies: Callable[..., Path]) -> None:
    folder = write_policies(
        {
            "a.yaml": """
            rules:
              - id: fl
                type: time_window
                match: {country: US, area_code: ["305", "3O5"]}
                allow: {hours: "08:00-20:00"}
            """
        }
    )
    with pytest.raises(PolicyError) as error:
        load_bundle(folder)
    assert error.value.problems == [
        "policies/a.yaml:4: fl: match.area_code: "
        "'3O5' is not an area code (1 to 6 digits, e.g. '305')"
    ]
