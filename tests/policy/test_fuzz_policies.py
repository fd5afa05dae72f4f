"""Whatever a policy author writes, loading gives a bundle or a PolicyError whose
problems are each one printable line naming the file and the line; nothing else
escapes, and a failed reload keeps the previous bundle serving."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import PolicyError
from gateway.policy.bundle import Bundle
from gateway.policy.holder import Policies
from gateway.policy.loader import load_bundle

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# `policies/a.yaml:12: ...`: the file as the author knows it, then the line.
PROBLEM = re.compile(r"policies/a\.yaml:[1-9][0-9]*: \S")

GOOD = """\
rules:
  - id: global-opt-out
    type: opt_out
    lists: [global, "sender:{sender}"]
    unless: {category: transactional}
  - id: caps
    type: frequency_cap
    match: {channel: sms, category: marketing}
    limits: [{count: 2, per: 24h}, {count: 5, per: 7d}]
  - id: length
    type: content_length
    match: {channel: sms}
    max_segments: 3
  - id: finance
    type: banned_terms
    terms: ["guaranteed returns", "稳赚不赔"]
  - id: unsubscribe
    type: required_text
    match: {country: CN}
    any_of: ["回T退订"]
  - id: quiet-hours
    type: time_window
    allow: {hours: "08:00-21:00", days: [mon, tue, wed, thu, fri]}
    fallback_timezone: America/New_York
    action: defer
"""

odd_text = st.text(max_size=12) | st.sampled_from(
    ["", "a\nb", "\u2028", "\x85", "\u202e", "\ufeff", "{", "a}", "0s", "-1h", "999999999999d",
     "24:00-08:00", "08:00-08:00", "٠٨:٠٠-٢١:٠٠", "Mon", "funday", "America/Nowhere", "US"]
)  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.dates()
    | st.datetimes()
    | odd_text
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=12,
)
# Pieces of YAML that stress the parser: anchors, aliases, tags, flow syntax,
# values PyYAML resolves to dates and numbers, unprintable characters.
yaml_pieces = st.sampled_from(
    [*"abc:-[]{},&*!|>'\"#?\n \t%@\\0123.~", "rules:", "- ", "id: ", "type: opt_out",
     "lists: ", "&a ", "*a ", "<<: ", "!!int ", "!!bool ", "!!float ", "!!timestamp ",
     "!!binary ", "!!python/object:os.system ", "!!set ", "2020-02-30", "0x", "1_0", ".nan",
     ".inf", "\u2028", "\x85", "\ufeff", "---\n", "...\n"]
)  # fmt: skip


@contextmanager
def policies(files: dict[str, bytes]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "policies"
        root.mkdir()
        for name, data in files.items():
            (root / name).write_bytes(data)
        yield root


def load(data: bytes) -> Bundle | list[str]:
    """The bundle, or the problems after checking each is one line an author can read."""
    with policies({"a.yaml": data}) as root:
        try:
            return load_bundle(root)
        except PolicyError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert PROBLEM.match(problem), problem
                assert problem.isprintable() and len(problem) < 1000, problem
            return exc.problems


def dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()


def paths(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    children = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, child in children:
        yield from paths(child, (*at, key))


def replaced(doc: Any, at: tuple[Any, ...], value: Any) -> Any:
    if not at:
        return value
    if isinstance(doc, dict):
        return {k: replaced(v, at[1:], value) if k == at[0] else v for k, v in doc.items()}
    return [replaced(v, at[1:], value) if i == at[0] else v for i, v in enumerate(doc)]


def test_the_good_file_loads() -> None:
    # The mutations below start from a file that loads, so a problem they meet is theirs.
    bundle = load(GOOD.encode())
    assert isinstance(bundle, Bundle) and len(bundle.rules) == 6


@FUZZ
@given(st.data())
def test_one_field_of_a_good_file_replaced(data: st.DataObject) -> None:
    doc = yaml.safe_load(GOOD)
    at = data.draw(st.sampled_from(list(paths(doc))), label="path")
    value = data.draw(values, label="value")
    result = load(dump(replaced(doc, at, value)))
    if isinstance(result, Bundle):
        # Every rule that loads can be traced to where it is written.
        assert set(result.sources) == {rule.id for rule in result.rules}


@FUZZ
@given(values)
def test_any_document_as_the_rules(doc: Any) -> None:
    load(dump(doc))
    load(dump({"rules": doc}))
    load(dump({"rules": [doc]}))


@FUZZ
@given(st.lists(yaml_pieces, max_size=40).map("".join))
def test_any_yaml_text(text: str) -> None:
    load(text.encode())
    load(b"rules:\n  - id: x\n    type: opt_out\n    lists: " + text.encode())


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    load(data)


@FUZZ
@given(
    hours=st.one_of(odd_text, st.from_regex(r"\A[0-9]{1,3}:[0-9]{1,3}-[0-9]{1,3}:[0-9]{1,3}\Z")),
    days=st.lists(odd_text | st.sampled_from(["mon", "SUN", " fri "]), max_size=3),
    per=st.one_of(odd_text, st.from_regex(r"\A-?[0-9]{1,15}[smhdw]\Z")),
)
def test_windows_and_durations(hours: str, days: list[str], per: str) -> None:
    load(
        dump(
            {
                "rules": [
                    {"id": "w", "type": "time_window", "allow": {"hours": hours, "days": days}},
                    {"id": "c", "type": "frequency_cap", "limits": [{"count": 1, "per": per}]},
                ]
            }
        )
    )


@settings(FUZZ, max_examples=100)
@given(st.binary(max_size=100) | values.map(dump))
def test_a_failed_reload_keeps_the_previous_bundle(data: bytes) -> None:
    with policies({"a.yaml": GOOD.encode()}) as root:
        holder = Policies(root)
        before = holder.current()
        (root / "a.yaml").write_bytes(data)
        try:
            after = holder.reload()
        except PolicyError:
            assert holder.current() is before
        else:
            assert holder.current() is after and after.version != before.version
