"""The loader refuses bad bundles whole, naming file, line, rule and field."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import load_bundle
from gateway.policy.schema import RESERVED_IDS
from tests.conftest import REPO

Writer = Callable[..., Path]


def problems(root: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_bundle(root)
    return [p.removeprefix("policies/") for p in caught.value.problems]


def problems_within(root: Path, seconds: float) -> list[str]:
    """`problems`, failing (not hanging) when the load takes longer than `seconds`."""
    found: list[list[str]] = []
    worker = threading.Thread(target=lambda: found.append(problems(root)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert found, f"loading took more than {seconds}s"
    return found[0]


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
        "a.yaml:3: x: type: unknown rule type 'contnt_length' (known: opt_out, consent, "
        "frequency_cap, content_length, banned_terms, required_text, time_window)"
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


def test_an_unclosed_list_names_the_line_it_began_on(write_policies: Writer) -> None:
    root = write_policies(
        {"a.yaml": "rules:\n  - id: a\n    type: opt_out\n    lists: [global\n    match: {}\n"}
    )
    assert problems(root) == [
        "a.yaml:5: not valid YAML: expected ',' or ']', but got ':'"
        " (while parsing a flow sequence that began on line 4)"
    ]


def test_defer_only_for_time_windows(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: len\n    type: content_length\n    max_chars: 5\n"
            "    action: defer\n"
        }
    )
    assert problems(root) == ["a.yaml:5: len: action: 'defer' is only for time_window rules"]


def test_one_mistake_in_a_value_or_list_field_is_one_problem(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: c\n    type: content_length\n    max_chars: 5\n"
            "    match: {channel: SMS}\n"
        }
    )
    found = problems(root)
    assert len(found) == 1 and found[0].startswith("a.yaml:5: c: match.channel: ")
    assert "'SMS'" in found[0]


@pytest.mark.parametrize(("value", "shown"), [("'true'", "'true'"), ("off", "'off'"), ("1", "1")])
def test_exclude_holidays_is_a_yaml_boolean(write_policies: Writer, value: str, shown: str) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: w\n    type: time_window\n"
            f"    allow: {{hours: '08:00-21:00'}}\n    exclude_holidays: {value}\n"
        }
    )
    assert problems(root) == [
        f"a.yaml:5: w: exclude_holidays: input should be a valid boolean, got {shown}"
    ]


@pytest.mark.parametrize("kind", ["opt_out", "consent"])
def test_placeholders_in_lists(write_policies: Writer, kind: str) -> None:
    root = write_policies(
        {"a.yaml": f'rules:\n  - id: o\n    type: {kind}\n    lists: ["x:{{foo}}"]\n'}
    )
    assert problems(root) == [
        "a.yaml:4: o: lists[0]: 'x:{foo}' uses {foo}; use {sender}, {route}, {channel} or"
        " {category}"
    ]


def test_a_consent_rule_needs_its_lists(write_policies: Writer) -> None:
    root = write_policies({"a.yaml": "rules:\n  - {id: c, type: consent, lists: []}\n"})
    (problem,) = problems(root)
    assert problem.startswith("a.yaml:2: c: lists: ")


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
    assert problems(root) == ["a.yaml:2: not UTF-8 text (byte 12)"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policies folder"):
        load_bundle(tmp_path / "nope")


def test_a_dangling_link_is_named_not_skipped(write_policies: Writer) -> None:
    root = write_policies({"a.yaml": "rules: []\n"})
    (root / "b.yaml").symlink_to(root / "moved-away.yaml")
    (root / "c.yml").mkdir()
    assert problems(root) == [
        f"b.yaml: a symbolic link to {root / 'moved-away.yaml'}, which does not exist",
        "c.yml: not a regular file, so it cannot hold rules",
    ]


def test_hidden_files_are_not_rule_files(write_policies: Writer) -> None:
    # Emacs keeps a dangling link `.#name` while a file is being edited.
    root = write_policies({"a.yaml": "rules: []\n", ".draft.yaml": "not: [valid"})
    (root / ".#a.yaml").symlink_to("user@host.1234:1700000000")
    assert load_bundle(root).rules == ()


def test_a_link_to_a_rule_file_loads(write_policies: Writer) -> None:
    root = write_policies({"a.yaml": "rules: []\n"})
    (root / "shared").mkdir()
    (root / "shared" / "opt.yaml").write_text(
        "rules:\n  - id: stop\n    type: opt_out\n    lists: [global]\n", encoding="utf-8"
    )
    (root / "b.yaml").symlink_to(root / "shared" / "opt.yaml")
    assert [r.id for r in load_bundle(root).rules] == ["stop"]


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
              - id: comments-only
                type: banned_terms
                terms_file: terms/none.txt
            """,
            "terms/latin1.txt": "",
            "terms/none.txt": "# to be filled in\n\n",
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
    # A rule that could never fire.
    assert found[5] == (
        "a.yaml:19: comments-only: terms_file: terms file 'terms/none.txt' holds no terms"
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


def test_an_alias_that_loops_is_refused(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules: &all [*all]\n",
            "b.yaml": "rules:\n  - &r {id: x, type: opt_out, lists: [g], match: *r}\n",
        }
    )
    assert problems(root) == [
        "a.yaml:1: an alias inside this value refers back to the value itself",
        "b.yaml:2: an alias inside this value refers back to the value itself",
    ]


def test_an_alias_bomb_is_refused_quickly(write_policies: Writer) -> None:
    # Seven lines that expand to ten million values.
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    root = write_policies({"a.yaml": "\n".join(lines) + "\nrules: *l6\n"})
    assert problems_within(root, 10) == [
        "a.yaml:1: aliases repeat too many values; write the values out"
    ]


def test_aliases_may_repeat_a_match_block(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - {id: a, type: opt_out, lists: [g], match: &sms {channel: sms}}
              - {id: b, type: content_length, max_chars: 5, match: *sms}
            """
        }
    )
    assert [r.id for r in load_bundle(root).rules] == ["a", "b"]


def test_deep_nesting_is_refused_with_its_line(write_policies: Writer) -> None:
    def block(levels: int) -> str:
        return "rules:\n" + "".join(" " * (2 * i) + "- \n" for i in range(levels))

    root = write_policies(
        {
            "a.yaml": "rules: " + "[" * 5000 + "]" * 5000 + "\n",
            "b.yaml": block(40),  # past the limit
            "c.yaml": block(3000),  # past what the YAML parser's recursion can take
        }
    )
    assert problems(root) == [
        "a.yaml:1: values are nested more than 32 deep",
        "b.yaml:34: values are nested more than 32 deep",
        "c.yaml:34: values are nested more than 32 deep",
    ]


def test_values_yaml_cannot_build_are_refused(write_policies: Writer) -> None:
    rule = "rules:\n  - {id: c, type: frequency_cap, limits: [{count: 1, per: %s}]}\n"
    root = write_policies(
        {
            "a.yaml": rule % "2020-02-30",
            "b.yaml": rule % "!!int abc",
            "c.yaml": rule % "!!bool maybe",
            "d.yaml": rule % ("9" * 5000),
        }
    )
    found = problems(root)
    assert found[:3] == [
        "a.yaml:2: not valid YAML: '2020-02-30' is not a valid timestamp",
        "b.yaml:2: not valid YAML: 'abc' is not a valid int",
        "c.yaml:2: not valid YAML: 'maybe' is not a valid bool",
    ]
    assert found[3].startswith("d.yaml:2: not valid YAML: '9999")
    assert found[3].endswith("9999' is not a valid int")


def test_every_problem_is_one_printable_line(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": '"top\\nlevel": 1\nrules:\n  - {id: "a\\nb", type: opt_out, lists: [g]}\n',
            "b.yaml": "rules:\n  - {id: c, type: !!python/name:os.system x, lists: [g]}\n",
            "c.yaml": "rules:\n  - {id: c, type: opt_out, lists: [\x00]}\n",
            "d.yaml": 'rules:\n  - {id: w, type: time_window, allow: {hours: "\\u202e08:00"}}\n',
        }
    )
    assert problems(root) == [
        "a.yaml:1: unknown top-level key 'top\\nlevel' (expected: rules)",
        "a.yaml:3: a\\nb: id: string should match pattern '^[A-Za-z0-9._-]+$', got 'a\\nb'",
        "b.yaml:2: not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'",
        "c.yaml:2: not valid YAML: unacceptable character #x0000: special characters "
        "are not allowed",
        "d.yaml:2: w: allow.hours: '\\u202e08:00' is not HH:MM-HH:MM (e.g. \"08:00-21:00\")",
    ]


def test_huge_values_are_quoted_short(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - {id: " + "a" * 1_000_000 + "!, type: opt_out, lists: [g]}\n",
            "b.yaml": "rules:\n  - {id: c, type: frequency_cap, limits: [{count: 1, per: 0x"
            + "f" * 5000
            + "}]}\n",
        }
    )
    assert problems(root) == [
        f"a.yaml:2: {'a' * 60}…(1000001 characters): id: string should have at most 128 "
        f"characters, got '{'a' * 60}…(1000001 characters)'",
        "b.yaml:2: c: limits[0].per: input should be a valid string, got a number of 20000 bits",
    ]


def test_cap_windows_are_at_most_ten_years(write_policies: Writer) -> None:
    rule = "rules:\n  - {id: c, type: frequency_cap, limits: [{count: 1, per: %s}]}\n"
    root = write_policies({"a.yaml": rule % "999999999999d", "b.yaml": rule % ("1" * 5000 + "d")})
    found = problems(root)
    assert (
        found[0] == "a.yaml:2: c: limits[0].per: '999999999999d' is longer than 3650d (ten years)"
    )
    assert found[1].endswith("d' is longer than 3650d (ten years)")
    assert len(found[1]) < 700
    # Two rules with problems, and the same id: reported too.
    assert len(found) == 3 and found[2].startswith("b.yaml:2: c: id: 'c' is already used at ")
    ok = write_policies({"a.yaml": rule % "3650d"}, folder="ok")
    assert load_bundle(ok).rules[0].limits[0].per_ms == 3650 * 86_400_000  # type: ignore[attr-defined]


def test_opt_out_list_braces_must_pair(write_policies: Writer) -> None:
    root = write_policies(
        {"a.yaml": "rules:\n  - {id: o, type: opt_out, lists: ['a}', 'sender:{sender']}\n"}
    )
    assert problems(root) == [  # every bad name, each at its place
        "a.yaml:2: o: lists[0]: 'a}' has a '{' or '}' without its pair",
        "a.yaml:2: o: lists[1]: 'sender:{sender' has a '{' or '}' without its pair",
    ]


def test_terms_have_a_length_limit(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - {id: inline, type: banned_terms, terms: [ok, %s]}
              - {id: in-file, type: banned_terms, terms_file: t.txt}
            """
            % ("x" * 1001),
            "t.txt": "ok\n" + "y" * 2_000_000 + "\n",
        }
    )
    found = problems(root)
    assert found[0] == "a.yaml:2: inline: terms[1]: term is 1001 characters long (at most 1000)"
    assert found[1].startswith("a.yaml:3: in-file: terms_file: terms file '")
    assert found[1].endswith("t.txt' line 2: term is 2000000 characters long (at most 1000)")


def test_terms_file_must_be_a_regular_file(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - {id: fifo, type: banned_terms, terms_file: pipe.txt}
              - {id: folder, type: banned_terms, terms_file: terms}
              - {id: nul, type: banned_terms, terms_file: "t\\0.txt"}
            """,
            "terms/x.txt": "x\n",
        }
    )
    os.mkfifo(root / "pipe.txt")  # reading it would block the load for ever
    found = problems_within(root, 10)
    assert found[0].startswith("a.yaml:2: fifo: terms_file: cannot read terms file '")
    assert found[0].endswith("pipe.txt': not a regular file")
    assert found[1].startswith("a.yaml:3: folder: terms_file: cannot read terms file '")
    assert found[1].endswith("terms': not a regular file")
    assert found[2] == "a.yaml:4: nul: terms_file: 't\\x00.txt' is not a file name"


def test_durations_take_ascii_digits_only(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - {id: caps, type: frequency_cap, limits: [{count: 2, per: \u0662\u0664h}]}\n"
        }
    )
    assert problems(root) == [
        "a.yaml:2: caps: limits[0].per: '\u0662\u0664h' is not a duration"
        " (use e.g. 30s, 15m, 24h, 7d)"
    ]


def test_terms_file_must_be_inside_the_policies_folder(
    write_policies: Writer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    root = write_policies(
        {
            "a.yaml": f"""
            rules:
              - {{id: absolute, type: banned_terms, terms_file: "{secret}"}}
              - {{id: climbing, type: banned_terms, terms_file: ../secret.txt}}
              - {{id: link, type: banned_terms, terms_file: terms/link.txt}}
              - {{id: inside, type: banned_terms, terms_file: terms/../t.txt}}
              - {{id: loop, type: banned_terms, terms_file: terms/loop.txt}}
            """,
            "t.txt": "free money\n",
            "terms/x.txt": "x\n",
        }
    )
    (root / "terms" / "link.txt").symlink_to(secret)
    (root / "terms" / "loop.txt").symlink_to(root / "terms" / "loop.txt")
    assert problems(root) == [
        f"a.yaml:2: absolute: terms_file: '{secret}' is an absolute path; write a path"
        " relative to this rule file, inside the policies folder",
        "a.yaml:3: climbing: terms_file: '../secret.txt' is outside the policies folder;"
        " a terms file must be inside it",
        "a.yaml:4: link: terms_file: 'terms/link.txt' is outside the policies folder;"
        " a terms file must be inside it",
        "a.yaml:6: loop: terms_file: 'terms/loop.txt' is a symlink loop",
    ]


def test_a_pack_may_name_a_terms_file_elsewhere_in_the_policies_folder(
    write_policies: Writer,
) -> None:
    root = write_policies(
        {
            "packs/p/rules.yaml": """
            rules:
              - {id: own, type: banned_terms, terms_file: terms.txt}
              - {id: shared, type: banned_terms, terms_file: ../../terms/shared.txt}
            """,
            "packs/p/terms.txt": "free money\n",
            "terms/shared.txt": "no risk\n",
        }
    )
    bundle = load_bundle(root, ["p"])
    assert [rule.id for rule in bundle.rules] == ["own", "shared"]
    write_policies(
        {
            "packs/q/rules.yaml": "rules:\n"
            "  - {id: out, type: banned_terms, terms_file: ../../../x.txt}\n"
        }
    )
    with pytest.raises(PolicyError) as caught:
        load_bundle(root, ["q"])
    assert caught.value.problems == [
        "policies/packs/q/rules.yaml:2: out: terms_file: '../../../x.txt' is outside the"
        " policies folder; a terms file must be inside it"
    ]


def test_shipped_packs_with_terms_files_load() -> None:
    policies = Path(__file__).resolve().parents[2] / "policies"
    packs = sorted(p.name for p in (policies / "packs").iterdir() if p.is_dir())
    assert load_bundle(policies, packs).rules


def test_every_bad_item_of_a_list_and_every_duplicate_id(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - {id: x, type: opt_out, lists: []}\n"
            "  - {id: x, type: opt_out, lists: [global]}\n"
            "  - id: w\n"
            "    type: time_window\n"
            '    allow: {hours: "08:00-21:00", days: [mon, funday, xday]}\n'
            '  - {id: t, type: banned_terms, terms: ["", "ok", "\u200b"]}\n'
            "  - {id: t3, type: banned_terms}\n"
            "  - {id: r, type: required_text}\n"
            "  - {id: c, type: content_length}\n"
        }
    )
    found = problems(root)
    assert found[1].startswith("a.yaml:3: x: id: 'x' is already used at ")
    assert found[2:] == [
        "a.yaml:6: w: allow.days[1]: 'funday' is not a day (use mon, tue, wed, thu, fri, sat, sun)",
        "a.yaml:6: w: allow.days[2]: 'xday' is not a day (use mon, tue, wed, thu, fri, sat, sun)",
        "a.yaml:7: t: terms[0]: term is empty",
        "a.yaml:7: t: terms[2]: term '\\u200b' normalizes to nothing (only spaces, separators"
        " or invisible characters)",
        # A rule missing its one needed field: the problem names that field.
        "a.yaml:8: t3: terms: give terms, terms_file, or both",
        "a.yaml:9: r: any_of: give exactly one of any_of, all_of",
        "a.yaml:10: c: max_segments: give at least one of max_segments, max_chars, max_bytes",
    ]


@pytest.mark.parametrize("kind", ["opt_out", "consent"])
def test_list_names_no_address_can_be_on_are_refused(write_policies: Writer, kind: str) -> None:
    lists = [
        "marketing opt-outs",
        "lit{{x}}",
        "a/b",
        "ümlaut",
        "x" * 129,
        "sender:{sender}",
        "{channel}.{category}@{route}",
        "{sender}" + "x" * 127,
    ]
    root = write_policies(
        {"a.yaml": f"rules:\n  - id: o\n    type: {kind}\n    lists: {lists}\n".replace("'", '"')}
    )
    rest = (
        "is not a list name (letters, digits, . _ : @ -, at most 128), so no address can be on it"
    )
    assert problems(root) == [
        f"a.yaml:4: o: lists[0]: 'marketing opt-outs' {rest}",
        f"a.yaml:4: o: lists[1]: 'lit{{{{x}}}}' {rest}",
        f"a.yaml:4: o: lists[2]: 'a/b' {rest}",
        f"a.yaml:4: o: lists[3]: 'ümlaut' {rest}",
        f"a.yaml:4: o: lists[4]: '{'x' * 129}' {rest}",
    ]


def test_conditions_no_message_can_meet_are_refused(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": """
            rules:
              - id: c
                type: content_length
                max_chars: 5
                match: {category: "mark eting", tags: [], sender: "", channel: []}
                unless:
                  tags: [ok, "a/b"]
                  route: ""
                  sender: [acme, "ü"]
                  country: []
            """
        }
    )
    name = "(letters, digits, . _ : @ -, at most 128), so no message has it"
    empty = "is empty, so no message matches it (leave the key out)"
    assert problems(root) == [
        f"a.yaml:5: c: match.channel: {empty}",
        f"a.yaml:5: c: match.category: 'mark eting' is not a category name {name}",
        f"a.yaml:5: c: match.sender: '' is not a sender name {name}",
        f"a.yaml:5: c: match.tags: {empty}",
        f"a.yaml:7: c: unless.tags: 'a/b' is not a tag {name}",
        "a.yaml:8: c: unless.route: '' is not a route name (letters, digits, . _ -),"
        " so no message has it",
        f"a.yaml:9: c: unless.sender: 'ü' is not a sender name {name}",
        f"a.yaml:10: c: unless.country: {empty}",
    ]


def test_a_country_no_number_belongs_to_and_the_gateways_own_ids_are_refused(
    write_policies: Writer,
) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - {id: recipient, type: content_length, max_chars: 5}\n"
            "  - {id: deferred-limit, type: content_length, max_chars: 5}\n"
            "  - {id: c, type: content_length, max_chars: 5, match: {country: [GB, UK]}}\n"
            "  - {id: d, type: content_length, max_chars: 5, unless: {country: XX}}\n"
        }
    )
    assert problems(root) == [
        "a.yaml:2: recipient: id: 'recipient' is the gateway's own id (the reason for a"
        " recipient that is not a valid address)",
        "a.yaml:3: deferred-limit: id: 'deferred-limit' is the gateway's own id (the reason for"
        " a sender's full queue of held messages)",
        "a.yaml:4: c: match.country: 'UK' is not the country of any phone number, so no message"
        " has it (use GB)",
        "a.yaml:5: d: unless.country: 'XX' is not the country of any phone number, so no message"
        " has it (an ISO 3166 code like US or CN)",
    ]


def test_categories_and_tags_are_lower_cased_senders_are_not(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: c\n    type: content_length\n    max_chars: 5\n"
            "    match: {category: Marketing, tags: [VIP, promo], sender: Acme}\n"
        }
    )
    rule = load_bundle(root).rules[0]
    assert rule.match is not None and rule.match.fields == (
        ("category", frozenset({"marketing"})),
        ("sender", frozenset({"Acme"})),
        ("tags", frozenset({"vip", "promo"})),
    )


def test_every_problem_of_a_time_window_or_banned_terms_rule(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - id: w\n"
            "    type: time_window\n"
            "    allow: {hours: '08:00-25:00', days: [funday]}\n"
            "    fallback_timezone: Bad/Zone\n"
            "    action: maybe\n"
            "  - id: v\n"
            "    type: time_window\n"
            "    allow: {hours: ['08:00-12:00', '14:00'], days: []}\n"
            "    exclude_holidays: 'yes'\n"
            "    holiday_calendar: XX\n"
            "    colour: red\n"
            "  - id: t\n"
            "    type: banned_terms\n"
            "    terms: ['ok', '']\n"
            "    terms_file: missing.txt\n"
            "    colour: red\n"
        }
    )
    found = problems(root)
    assert [p.split(": ")[:3] for p in found] == [
        ["a.yaml:4", "w", "allow.hours"],
        ["a.yaml:4", "w", "allow.days[0]"],
        ["a.yaml:5", "w", "fallback_timezone"],
        ["a.yaml:6", "w", "action"],
        ["a.yaml:9", "v", "allow.hours[1]"],
        ["a.yaml:9", "v", "allow.days"],
        ["a.yaml:10", "v", "exclude_holidays"],
        ["a.yaml:11", "v", "holiday_calendar"],
        ["a.yaml:12", "v", "colour"],
        ["a.yaml:15", "t", "terms[1]"],
        ["a.yaml:16", "t", "terms_file"],
        ["a.yaml:17", "t", "colour"],
    ]
    assert found[0] == (
        "a.yaml:4: w: allow.hours: '08:00-25:00': '25:00' is not a time of day"
        " (00:00 to 23:59, or 24:00 to end a range)"
    )
    assert found[5] == (
        "a.yaml:9: v: allow.days: is empty, so the window would never open"
        " (leave it out to allow every day)"
    )
    assert "'Bad/Zone' is not an IANA time zone" in found[2]
    # Whether the calendar has an effect cannot be told while exclude_holidays is wrong.
    assert found[7] == (
        "a.yaml:11: v: holiday_calendar: 'XX' is not a country the holidays package knows"
        " (use an ISO 3166 code like US or FR)"
    )


def test_a_mapping_or_a_list_where_another_shape_is_expected(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - {id: l, type: frequency_cap, limits: {count: 1, per: 1h}}\n"
            "  - {id: m, type: content_length, max_chars: 5, match: [sms]}\n"
            "  - {id: c, type: content_length, max_chars: 5, match: {channel: {a: 1}}}\n"
            "  - {id: d, type: content_length, max_chars: 5, match: {channel: [sms, fax]}}\n"
            "  - {id: h, type: time_window, allow: {hours: {from: '08:00'}}}\n"
            "  - {id: e, type: frequency_cap, limits: []}\n"
        }
    )
    assert problems(root) == [
        'a.yaml:2: l: limits: input should be a valid list, got {"count": 1, "per": "1h"}',
        'a.yaml:3: m: match: input should be a mapping, got ["sms"]',
        "a.yaml:4: c: match.channel: input should be 'sms', 'email' or 'push', got {\"a\": 1}",
        "a.yaml:5: d: match.channel[1]: input should be 'sms', 'email' or 'push', got 'fax'",
        'a.yaml:6: h: allow.hours: input should be a valid string, got {"from": "08:00"}',
        "a.yaml:7: e: limits: is empty; give at least one",
    ]


def test_a_key_given_twice_names_its_rule(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - id: x\n"
            "    type: opt_out\n"
            "    lists: [g]\n"
            "    type: consent\n"
            "  - {id: y, type: opt_out, lists: [g], match: {channel: sms, channel: email}}\n"
            "  - {id: z, type: opt_out, lists: ['a b']}\n"
            "rules: []\n"
        }
    )
    assert problems(root) == [
        "a.yaml:5: x: type: is given twice (first on line 3)",
        "a.yaml:6: y: match.channel: is given twice (first on line 6)",
        "a.yaml:7: z: lists[0]: 'a b' is not a list name (letters, digits, . _ : @ -,"
        " at most 128), so no address can be on it",
        "a.yaml:8: 'rules' is given twice (first on line 1)",
    ]


def test_a_pack_listed_twice_is_named(write_policies: Writer) -> None:
    root = write_policies(
        {"packs/us/x.yaml": "rules: [{id: us-rule, type: opt_out, lists: [x]}]\n"}
    )
    with pytest.raises(PolicyError) as caught:
        load_bundle(root, ["us", "us"])
    assert caught.value.problems == [f"{root / 'packs' / 'us'}: rule pack 'us' is listed twice"]


def test_rule_files_end_in_yaml_or_yml_in_any_case(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules: [{id: a, type: opt_out, lists: [g]}]\n",
            "B.YAML": "rules: [{id: b, type: opt_out, lists: [g]}]\n",
            "c.yml": "rules: [{id: c, type: opt_out, lists: [g]}]\n",
            "d.Yml": "rules: [{id: d, type: opt_out, lists: [g]}]\n",
            "e.test.yml": "cases: []\n",
            "f.TEST.YAML": "cases: []\n",
            "g.json": "{}\n",
        }
    )
    assert [r.id for r in load_bundle(root).rules] == ["b", "a", "c", "d"]


def test_a_rule_with_a_bad_field_is_still_checked_whole(write_policies: Writer) -> None:
    """A field that fails the schema used to hide the checks of the rule as a
    whole, which pydantic skips then: every problem is listed at once."""
    root = write_policies(
        {
            "a.yaml": "rules:\n  - id: a\n    type: banned_terms\n    match: {chanel: sms}\n"
            "    terms: []\n"
        }
    )
    assert problems(root) == [
        "a.yaml:4: a: match.chanel: unknown field 'chanel'"
        " (known: channel, category, sender, route, country, area_code, tags)",
        "a.yaml:5: a: terms: give terms, terms_file, or both",
    ]


def test_values_are_quoted_as_yaml_writes_them(write_policies: Writer) -> None:
    root = write_policies(
        {
            "a.yaml": "rules:\n"
            "  - {id: t, type: [opt_out], lists: [global]}\n"
            "  - {id: c, type: content_length, max_chars: true}\n"
            "  - {id: d, type: opt_out, lists: [null]}\n"
        }
    )
    found = problems(root)
    assert found[0].startswith('a.yaml:2: t: type: unknown rule type ["opt_out"] (known: ')
    assert found[1:] == [
        "a.yaml:3: c: max_chars: input should be a valid integer, got true",
        "a.yaml:4: d: lists[0]: input should be a valid string, got null",
    ]


def test_every_id_the_gateways_own_reasons_use_is_reserved() -> None:
    # Read off the code that makes those reasons: a new one must be reserved too.
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in (REPO / "gateway").rglob("*.py")
    )
    made = set(re.findall(r'Reason\(\s*"([^"]+)"', source))
    made |= set(re.findall(r'"rule": "([^"{]+)"', source))
    made |= {"store", "trail"}  # named through a variable (Gateway.unavailable)
    assert made <= set(RESERVED_IDS), made - set(RESERVED_IDS)
