"""What a SendGrid mail shows its reader, as one text for the policies.

SendGrid builds the mail it delivers from more than `content`: legacy
`substitutions` and `sections` are replaced into the content and subject, a
template is filled with `dynamic_template_data`, a footer and an
unsubscribe text are added, display names are shown, and text attachments
are read like the body. Everything of it that is in the request is judged:
HTML as the text a mail client shows (tags and comments dropped, entities
decoded), so `guar<b></b>anteed` is "guaranteed", each link and image
address and alternative text on a line of its own. A template's own text and
binary attachments stay with SendGrid, unseen.
"""

from __future__ import annotations

import base64
import binascii
import re
from html.parser import HTMLParser
from typing import Any

from gateway.errors import InputError

# Tags a mail client shows as a break between texts; other tags join them.
_BREAKS = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "footer"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section"}
    | {"table", "td", "th", "title", "tr", "ul"}
)
_HIDDEN = frozenset({"script", "style", "head"})
_SHOWN_ATTRIBUTES = frozenset({"alt", "title", "href", "src"})


def _fail(field: str, message: str) -> InputError:
    return InputError(f"{field}: {message}", {field: message})


class _Shown(HTMLParser):
    """The text of an HTML document as a mail client shows it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BREAKS:
            self.parts.append("\n")
        for name, value in attrs:  # shown where an image is not, on hover, or followed
            if name in _SHOWN_ATTRIBUTES and value:
                self.parts.append(f"\n{value}\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def shown_html(html: str) -> str:
    parser = _Shown()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def _shown(kind: Any, value: str) -> str:
    html = isinstance(kind, str) and kind.split(";")[0].strip().lower() == "text/html"
    return shown_html(value) if html else value


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
    substitutions replaced, then the sections they name."""
    block = data["personalizations"][p]
    substitutions = _strings(block.get("substitutions"), f"personalizations.{p}.substitutions")
    sections = _strings(data.get("sections"), "sections")
    return _replaced(_replaced(text, substitutions), sections)


def _names(data: dict[str, Any], p: int) -> list[str]:
    """The display names the mail shows: its sender's, its reply-to's and its
    recipients'."""
    block = data["personalizations"][p]
    people: list[Any] = [data.get("from"), data.get("reply_to"), block.get("from")]
    people += data.get("reply_to_list") or []
    for kind in ("to", "cc", "bcc"):
        people += block.get(kind) or []
    return [
        person["name"]
        for person in people
        if isinstance(person, dict) and isinstance(person.get("name"), str)
    ]


def _added(data: dict[str, Any]) -> list[str]:
    """The footer and the unsubscribe text SendGrid adds, when enabled."""
    texts = []
    for where, names in (
        ("mail_settings", ("footer",)),
        ("tracking_settings", ("subscription_tracking",)),
    ):
        settings = data.get(where)
        for name in names:
            setting = settings.get(name) if isinstance(settings, dict) else None
            if not isinstance(setting, dict):
                continue
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
    texts = [_shown(kind, replace_tags(data, p, value)) for kind, value in content]
    # What fills a template is judged alone too: the template is not here.
    texts += _strings(block.get("substitutions"), f"personalizations.{p}.substitutions").values()
    texts += _strings(data.get("sections"), "sections").values()
    texts += leaves(template) if template is not None else []
    texts += _names(data, p) + _added(data) + _attached(data)
    return "\n".join(texts)
