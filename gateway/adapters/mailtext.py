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
links and images follow on lines of their own. Nothing is taken to be
hidden: mail clients, browsers and the HTML5 parser differ on where a
comment, a `<head>` or a `<style>` ends, and a text one of them shows must
not slip past a banned term, so the text of comments, scripts and styles is
judged too. Regular expressions that never look past the next `<` keep this
linear in the size of the HTML, whatever it holds.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html as html_entities
import re
from typing import Any

from gateway.errors import InputError

# A tag, a comment's delimiter or a declaration, as the HTML5 tokenizer starts
# one ("<" and a letter, "/", "!" or "?"); "a < b" stays text.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
# Tags a mail client shows as a break between texts; other tags join them
# (`guar<b></b>anteed` is one word).
_BREAK = re.compile(
    r"</?(?:address|article|aside|blockquote|br|dd|div|dl|dt|footer|h[1-6]|header|hr|li|ol|p"
    r"|pre|section|table|td|th|title|tr|ul)\b[^<>]*>",
    re.IGNORECASE,
)
# Shown where an image is not, on hover, or followed.
_ADDRESS = re.compile(
    r"""\b(?:alt|title|href|src)\s*=\s*(?:"([^"<>]*)"|'([^'<>]*)'|([^\s"'<>=`]+))""",
    re.IGNORECASE,
)


def _fail(field: str, message: str) -> InputError:
    return InputError(f"{field}: {message}", {field: message})


@functools.lru_cache(maxsize=64)  # every personalization shows the same content
def shown_html(html: str) -> str:
    """The text of an HTML document for the policies (the module's docstring)."""
    addresses = [
        next(value for value in found.groups() if value is not None)
        for tag in _TAG.findall(html)
        for found in _ADDRESS.finditer(tag)
    ]
    text = _TAG.sub("", _BREAK.sub("\n", html))
    return html_entities.unescape("\n".join([text, *addresses]))


def _shown(kind: Any, value: str) -> str:
    return shown_html(value) if isinstance(kind, str) and "html" in kind.lower() else value


def _replaced(text: str, table: dict[str, str]) -> str:
    """`text` with every key of `table` replaced by its value at once, longest
    keys first, as SendGrid replaces substitution and section tags."""
    keys = sorted((k for k in table if k), key=len, reverse=True)
    if not keys:
        return text
    pattern = re.compile("|".join(map(re.escape, keys)))
    return pattern.sub(lambda match: table[match.group()], text)


def _strings(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _fail(field, "must map tags to string values")
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


def _names(data: dict[str, Any], p: int) -> list[str]:
    """The display names the mail shows: its sender's, its reply-to's, and
    those of the recipients in to and cc (bcc is shown to nobody)."""
    block = data["personalizations"][p]
    people: list[Any] = [data.get("from"), data.get("reply_to"), block.get("from")]
    people += data.get("reply_to_list") or []
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
    for n, item in enumerate(data.get("attachments") or []):
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
