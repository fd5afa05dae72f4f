"""The loader refuses bad bundles whole, naming file, line, rule and field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import load_bundle

Writer = Callable[..., Path]


def problems(root: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_bundle(root)
    return [p.removeprefix("policies/") for p in caught.value.problems]


def test_a_good_bundle_loads_with_a_content_version(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - id: caps
                type: frequency_cap
                limits: [{count: 2, per: 24h}]
            """,
            "a.test.yaml": "cases: []\n",
            "packs/us/x.yaml": "rules: [{id: not-loaded, type: opt_out, lists: [x]}]\n",
        }
    )
    bundle = load_bundle(root)
    assert [r.id for r in bundle.rules] == ["caps"]
    assert bundle.version.startswith("sha256:")
    assert load_bundle(root).version == bundle.version
    (root / "a.yaml").write_text((root / "a.yaml").read_text() + "\n# changed\n")
    assert load_bundle(root).version != bundle.version


def test_packs_are_added_by_name(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules: [{id: a, type: opt_out, lists: [global]}]\n",
            "packs/us/x.yaml": "rules: [{id: us-rule, type: opt_out, lists: [x]}]\n",
        }
    )
    assert [r.id for r in load_bundle(root, ["us"]).rules] == ["a", "us-rule"]
    with pytest.raises(PolicyError, match=r"no such rule pack 'fr' \(known: us\)"):
        load_bundle(root, ["fr"])


def test_unknown_type(write_policies: Writer) -> None:
    root = write_policies({"a.yaml": "rules:\n  - id: x\n    type: contnt_length\n"})
    assert problems(root) == [
        "a.yaml:3: x: type: unknown rule type 'contnt_length' (known: opt_out, frequency_cap, "
        "content_length, banned_terms, required_text, time_window)"
    ]


def test_unknown_field_names_the_known_ones(write_policies: Writer) -> None:
    root = write_policies(
        {"a.yaml": "rules:\n  - id: len\n    type: content_length\n    max_segment: 3\n"}
    )
    assert problems(root) == [
        "a.yaml:4: len: max_segment: unknown field 'max_segment' (known: id, match, unless, "
        "action, description, type, field, max_segments, max_chars, max_bytes)",
    ]


def test_bad_duration_and_count_quote_the_value(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - id: caps
                type: frequency_cap
                limits:
                  - {count: 2, per: 24x}
                  - {count: "a", per: 7d}
                key: recipent
            """
        }
    )
    assert problems(root) == [
        "a.yaml:5: caps: limits[0].per: '24x' is not a duration (use e.g. 30s, 15m, 24h, 7d)",
        "a.yaml:6: caps: limits[1].count: input should be a valid integer, got 'a'",
        "a.yaml:7: caps: key: input should be 'recipient', 'sender_recipient' or 'sender', "
        "got 'recipent'",
    ]


def test_every_problem_of_every_file_at_once(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: dup\n    type: opt_out\n    lists: [global]\n",
            "b.yaml": (
                "rules:\n  - id: dup\n    type: opt_out\n    lists: [global]\n"
                "  - type: opt_out\n    lists: [x]\n"
                "  - id: bad id!\n    type: opt_out\n    lists: [x]\n"
            ),
            "c.yaml": "rules: [\n",
        }
    )
    assert problems(root) == [
        "b.yaml:2: dup: id: 'dup' is already used at policies/a.yaml:2",
        "b.yaml:5: rules[1]: id: is required",
        "b.yaml:7: bad id!: id: string should match pattern '^[A-Za-z0-9._-]+$', got 'bad id!'",
        "c.yaml:2: not valid YAML: expected the node content, but found '<stream end>'",
    ]


def test_defer_only_for_time_windows(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: len\n    type: content_length\n    max_chars: 5\n"
            "    action: defer\n"
        }
    )
    assert problems(root) == ["a.yaml:2: len: action 'defer' is only for time_window rules"]


def test_placeholders_in_opt_out_lists(write_policies: Writer) -> None:
    root = write_policies(
        {"a.yaml": 'rules:\n  - id: o\n    type: opt_out\n    lists: ["x:{foo}"]\n'}
    )
    assert problems(root) == [
        "a.yaml:4: o: lists: 'x:{foo}' uses {foo}; use {sender}, {route}, {channel} or {category}"
    ]


def test_top_level_shape(write_policies: Writer) -> None:
    root = write_policies({"a.yaml": "rule:\n  - id: x\n", "b.yaml": "", "c.yaml": "- 1\n"})
    assert problems(root) == [
        "a.yaml:1: unknown top-level key 'rule' (expected: rules)",
        "a.yaml:1: 'rules' must be a list of rules",
        "b.yaml:1: the file is empty; it needs a 'rules:' list",
        "c.yaml:1: the file must be a mapping with a 'rules:' list",
    ]


def test_norway_stays_a_country(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: o\n    type: opt_out\n    lists: [g]\n"
            "    match: {country: NO}\n"
        }
    )
    rule = load_bundle(root).rules[0]
    assert rule.match is not None and rule.match.fields == (("country", frozenset({"NO"})),)


def test_not_utf8(write_policies: Writer) -> None:
    root = write_policies({})
    (root / "a.yaml").write_bytes(b"rules: []\n# \xff\n")
    assert problems(root) == ["a.yaml: not UTF-8 text (byte 12)"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policies folder"):
        load_bundle(tmp_path / "nope")


def test_bad_terms_refuse_the_bundle(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - id: empty
                type: banned_terms
                terms: ["ok", ""]
              - id: invisible
                type: banned_terms
                terms: ["\\u200b"]
              - id: missing-file
                type: banned_terms
                terms_file: terms/nope.txt
              - id: latin1-file
                type: banned_terms
                terms_file: terms/latin1.txt
              - id: required-empty
                type: required_text
                any_of: [" "]
            """,
            "terms/latin1.txt": "",
        }
    )
    (root / "terms" / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n")
    found = problems(root)
    assert found[0] == "a.yaml:4: empty: terms[1]: term is empty"
    assert found[1] == (
        "a.yaml:7: invisible: terms[0]: term '\\u200b' normalizes to nothing "
        "(only spaces, separators or invisible characters)"
    )
    assert found[2].startswith("a.yaml:10: missing-file: terms_file: terms file '")
    assert found[2].endswith("terms/nope.txt' not found")
    assert found[3].startswith("a.yaml:13: latin1-file: terms_file: terms file '")
    assert found[3].endswith("latin1.txt' is not UTF-8: byte 0xe9 on line 2")
    assert found[4].startswith(
        "a.yaml:16: required-empty: any_of[0]: term ' ' normalizes to nothing"
    )


def test_terms_files_count_in_the_version(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - {id: b, type: banned_terms, terms_file: t.txt}\n",
            "t.txt": "free money\n",
        }
    )
    before = load_bundle(root)
    assert "policies/t.txt" in before.files
    (root / "t.txt").write_text("free money\nno risk\n")
    assert load_bundle(root).version != before.version


def test_the_version_does_not_depend_on_where_the_folder_is(write_policies: Writer) -> None:
    text = {"a.yaml": "rules: [{id: a, type: opt_out, lists: [global]}]\n"}
    here, there = write_policies(text, folder="one"), write_policies(text, folder="two")
    assert load_bundle(here).version == load_bundle(there).version
