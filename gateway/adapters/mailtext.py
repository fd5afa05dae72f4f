"""What a SendGrid mail shows its reader, as one text for the policies.

SendGrid builds the mail it delivers from more than `content`: legacy
`substitutions` and `sections` are replaced into the content and subject, a
template is filled with `dynamic_template_data`, a footer and an
unsubscribe text are added when enabled, display names are shown, and text
attachments are read like the body. Everything of it that is in the request
is judged. A template's own text and binary attachments stay with SendGrid,
unseen.

HTML (any content type that names html, AMP's too) is judged as its text
with the markup taken out: every tag is removed (block tags leave a line
break), entities are decoded, and the addresses and alternative texts of
links and images follow on lines of their own. Where readers of HTML differ
(where a comment ends, whether a ">" inside a quoted attribute ends a tag,
whether a comment is shown at all), each reading is judged, so that a text
one of them shows cannot slip past a banned term. Regular expressions that
look no further than the next `<` or a bounded quoted value keep this linear
in the size of the HTML, whatever it holds.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html as html_entities
import re
from typing import Any

import ahocorasick

from gateway.errors import InputError

# A tag or a declaration as the HTML5 tokenizer starts one ("<" and a letter,
# "/", "!" or "?"; "a < b" stays text), read two ways, since a browser reads
# quoted attribute values whole ("a>b" inside one ends nothing) and a broken
# quote may make it read otherwise: every way is judged. A quoted value is
# read up to 2,048 characters, which keeps each attempt, and so the whole
# reading, linear in the HTML's length.
_TAG_QUOTED = re.compile(r"""<[A-Za-z/!?](?>"[^"]{0,2048}"|'[^']{0,2048}'|[^<>"'])*+>""")
_TAG_PLAIN = re.compile(r"<[A-Za-z/!?][^<>]*>")
# A comment is read both ways: hidden, as browsers read it, and shown, since
# a client may show it (Outlook between conditional comments) and parsers
# differ on where one ends.
_COMMENT_ENDS = re.compile(r"<!--|--!?>")
# Tags a mail client shows as a break between texts; other tags join them
# (`guar<b></b>anteed` is one word).
_BREAK = re.compile(
    r"""</?(?:address|article|aside|blockquote|br|dd|div|dl|dt|footer|h[1-6]|header|hr|li"""
    r"""|ol|p|pre|section|table|td|th|title|tr|ul)\b(?>"[^"]{0,2048}"|'[^']{0,2048}'|[^<>"'])*+>""",
    re.IGNORECASE,
)
# Shown where an image is not, on hover, or followed: read from the whole
# document, wherever a broken tag would put them.
_ADDRESS = re.compile(
    r"""\b(?:alt|title|href|src)\s*=\s*(?:"([^"]{0,2048})"|'([^']{0,2048})'|([^\s"'<>=`]+))""",
    re.IGNORECASE,
)


def _fail(field: str, message: str) -> InputError:
    return InputError(f"{field}: {message}", {field: message})


@functools.lru_cache(maxsize=64)  # every personalization shows the same content
def shown_html(html: str) -> str:
    """The text of an HTML document for the policies (the module's docstring)."""
    addresses = [
        next(value for value in found.groups() if value is not None)
        for found in _ADDRESS.finditer(html)
    ]
    texts = []
    for source in (_without_comments(html), _COMMENT_ENDS.sub("", html)):
        blocks = _BREAK.sub("\n", source)
        texts += [_TAG_PLAIN.sub("", _TAG_QUOTED.sub("", blocks)), _TAG_PLAIN.sub("", blocks)]
    return html_entities.unescape("\n".join([*dict.fromkeys(texts), *addresses]))


def _without_comments(html: str) -> str:
    """`html` with each comment taken out, from `<!--` to the next `-->` (or
    `--!>`), in one pass: an unclosed one runs to the end."""
    parts, at, start = [], 0, None
    for found in _COMMENT_ENDS.finditer(html):
        if found.group() == "<!--" and start is None:
            parts.append(html[at : found.start()])
            start = found.start()
        elif found.group() != "<!--" and start is not None:
            at, start = found.end(), None
    if start is None:
        parts.append(html[at:])
    return "".join(parts)


def _shown(kind: Any, value: str) -> str:
    return shown_html(value) if isinstance(kind, str) and "html" in kind.lower() else value


def _replaced(text: str, table: dict[str, str]) -> str:
    """`text` with every key of `table` replaced by its value at once, the
    longest key where several start at one place, as SendGrid replaces
    substitution and section tags: one pass over the text, whatever the
    number of keys (an Aho-Corasick automaton)."""
    keys = [key for key in table if key]
    if not keys:
        return text
    automaton = _automaton(tuple(keys))
    parts, at = [], 0
    for end, key in automaton.iter_long(text):
        start = end - len(key) + 1
        parts += [text[at:start], table[key]]
        at = end + 1
    return "".join([*parts, text[at:]]) if parts else text


@functools.lru_cache(maxsize=32)  # one table per personalization, used for each of its texts
def _automaton(keys: tuple[str, ...]) -> Any:
    automaton = ahocorasick.Automaton()
    for key in keys:
        automaton.add_word(key, key)
    automaton.make_automaton()
    return automaton


# SendGrid's own limit on a personalization's substitutions, in bytes; the
# gateway holds sections to it too.
MAX_TAGS_BYTES = 10_000


def _strings(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _fail(field, "must map tags to string values")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
    if size > MAX_TAGS_BYTES:
        raise _fail(field, f"holds {size} bytes of tags and values, at most {MAX_TAGS_BYTES}")
    return value


def leaves(value: Any) -> list[str]:
    """Every key, string and number in a JSON value, in reading order (a loop:
    the value may be nested as deep as the parser took). Keys too: a template
    may print them."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in reversed(item.items()):
                stack.extend((inner, key))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            found.append(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            found.append(str(item))
    return found


def replace_tags(data: dict[str, Any], p: int, text: str) -> str:
    """`text` (content or subject) as personalization p's reader gets it: its
    substitutions replaced, then the sections (which a substitution may name,
    and which may hold substitution tags in turn)."""
    block = data["personalizations"][p]
    substitutions = _strings(block.get("substitutions"), f"personalizations.{p}.substitutions")
    sections = _strings(data.get("sections"), "sections")
    if not substitutions and not sections:
        return text
    return _replaced(_replaced(_replaced(text, substitutions), sections), substitutions)


def _items(data: dict[str, Any], field: str) -> list[Any]:
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(field, "must be a list")
    return value


def _names(data: dict[str, Any], p: int) -> list[str]:
    """The display names the mail shows: its sender's, its reply-to's, and
    those of the recipients in to and cc (bcc is shown to nobody)."""
    block = data["personalizations"][p]
    people: list[Any] = [data.get("from"), data.get("reply_to"), block.get("from")]
    people += _items(data, "reply_to_list")
    for kind in ("to", "cc"):
        people += block.get(kind) or []
    return [
        person["name"]
        for person in people
        if isinstance(person, dict) and isinstance(person.get("name"), str)
    ]


def _added(data: dict[str, Any]) -> list[str]:
    """The footer and the unsubscribe text SendGrid adds, when enabled."""
    texts = []
    added = (("mail_settings", "footer"), ("tracking_settings", "subscription_tracking"))
    for where, name in added:
        settings = data.get(where)
        setting = settings.get(name) if isinstance(settings, dict) else None
        if not isinstance(setting, dict) or setting.get("enable") is False:
            continue  # left out, or switched off: not shown (a missing enable is judged)
        if isinstance(setting.get("text"), str):
            texts.append(setting["text"])
        if isinstance(setting.get("html"), str):
            texts.append(shown_html(setting["html"]))
    return texts


def _attached(data: dict[str, Any]) -> list[str]:
    """The text of every text attachment: a mail client shows it like the body."""
    texts = []
    for n, item in enumerate(_items(data, "attachments")):
        if not isinstance(item, dict) or not str(item.get("type", "")).lower().startswith("text/"):
            continue
        try:
            raw = base64.b64decode(str(item.get("content", "")), validate=True)
        except binascii.Error:
            raise _fail(f"attachments.{n}.content", "is not base64") from None
        texts.append(_shown(item.get("type"), raw.decode("utf-8", "replace")))
    return texts


def body(data: dict[str, Any], content: list[tuple[Any, str]], p: int) -> str:
    """Everything personalization p's reader is shown but the subject, from
    `content` ((type, value) pairs), as one text for the policies."""
    block = data["personalizations"][p]
    template = block.get("dynamic_template_data")
    if template is not None and not isinstance(template, dict):
        raise _fail(f"personalizations.{p}.dynamic_template_data", "must be an object")
    substitutions = _strings(block.get("substitutions"), f"personalizations.{p}.substitutions")
    sections = _strings(data.get("sections"), "sections")
    texts = [_shown(kind, replace_tags(data, p, value)) for kind, value in content]
    if "template_id" in data:
        # The template is not here, so what may fill it is judged alone: each
        # substitution and section, and the dynamic data.
        texts += [*substitutions.values(), *sections.values()]
        texts += leaves(template) if template is not None else []
    texts += _names(data, p) + _added(data) + _attached(data)
    return "\n".join(texts)
