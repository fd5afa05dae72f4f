"""YAML that remembers where each value came from, so errors can name the line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans, so `country: NO` stays Norway."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True, slots=True)
class Located:
    """A parsed YAML document and the 1-based line of every value in it."""

    data: Any
    lines: dict[Path, int]
    # Keys given twice, when parsed with `keep_first`: (path of the key, line of the repeat).
    repeated: tuple[tuple[Path, int], ...] = ()

    def line(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)


class YamlError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


# Deeper than any rule file needs (a rule's limits sit at depth 4).
MAX_DEPTH = 32
# How many values aliases may add to a file beyond its length in characters:
# plenty for reusing `match:` blocks, far too few for an "alias bomb", a few
# lines whose aliases of aliases expand to millions of values.
ALIAS_ALLOWANCE = 10_000


def parse(text: str, *, keep_first: bool = False) -> Located:
    """Parse one YAML document (safe constructors only) with its line map.

    A key given twice in a mapping is a YamlError; with `keep_first`, its first
    value is kept and the repeat is listed in `repeated` instead, so that the
    caller can say whose key it is and go on checking the rest."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        # Where the unclosed thing began ("while parsing a flow sequence"), when
        # the parser noticed the problem on a later line.
        began = exc.context_mark.line + 1 if exc.context_mark else line
        context = f" ({exc.context} that began on line {began})" if began < line else ""
        raise YamlError(line, f"not valid YAML: {exc.problem or exc.context}{context}") from None
    except yaml.reader.ReaderError as exc:
        # Its text spans two lines and counts characters, not lines.
        line = text.count("\n", 0, exc.position) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else "character"
        raise YamlError(
            line, f"not valid YAML: unacceptable character {what}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"not valid YAML: {exc}") from None
    except RecursionError:
        # The composer recurses once per level of nesting.
        raise YamlError(_too_deep(text), f"values are nested more than {MAX_DEPTH} deep") from None
    lines: dict[Path, int] = {}
    if node is None:
        return Located(None, lines)
    builder = _Builder(lines, len(text) + ALIAS_ALLOWANCE, [] if keep_first else None)
    data = builder.build(node, ())
    return Located(data, lines, tuple(builder.repeated or ()))


def _too_deep(text: str) -> int:
    """The line where nesting first goes deeper than MAX_DEPTH (the parser's
    events come without recursion)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1  # the document's own mapping is depth 1, where paths start at 0
                if depth > MAX_DEPTH + 1 and event.start_mark is not None:
                    return int(event.start_mark.line) + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except (yaml.YAMLError, RecursionError):
        pass
    return 1


class _Builder:
    """Plain values from the composed nodes. An alias makes two paths share a
    node, so the node graph may loop or expand far beyond the text: both are
    refused rather than followed."""

    def __init__(
        self, lines: dict[Path, int], budget: int, repeated: list[tuple[Path, int]] | None
    ) -> None:
        self.lines = lines
        self.budget = budget  # values left to build
        self.open: set[int] = set()  # ids of the collections being built, around this one
        self.repeated = repeated  # None: a key given twice is an error

    def build(self, node: yaml.Node, path: Path) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        self.budget -= 1
        if self.budget < 0:
            raise YamlError(line, "aliases repeat too many values; write the values out")
        if len(path) > MAX_DEPTH:
            raise YamlError(line, f"values are nested more than {MAX_DEPTH} deep")
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if id(node) in self.open:
            raise YamlError(line, "an alias inside this value refers back to the value itself")
        self.open.add(id(node))
        try:
            return self._collection(node, path)
        finally:
            self.open.discard(id(node))

    def _collection(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlError(key_node.start_mark.line + 1, "keys must be plain text")
                key = str(key_node.value)
                if key in out:
                    if self.repeated is None:
                        raise YamlError(key_node.start_mark.line + 1, f"'{key}' is given twice")
                    self.repeated.append(((*path, key), key_node.start_mark.line + 1))
                    continue
                out[key] = self.build(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1  # the line naming the field
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        raise YamlError(node.start_mark.line + 1, "expected a plain value here")


def _scalar(node: yaml.Node) -> Any:
    line = node.start_mark.line + 1
    try:
        return _Loader("").construct_object(node)
    except yaml.MarkedYAMLError as exc:
        # Its text adds the source line and a caret on further lines.
        raise YamlError(line, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(line, f"not valid YAML: {exc}") from None
    except (ValueError, LookupError, AttributeError, TypeError, ArithmeticError):
        # PyYAML's scalar constructors raise plain Python errors for text that
        # looks like a type but is not one: 2020-02-30, `!!int abc`, `!!bool x`,
        # an integer of thousands of digits.
        kind = str(node.tag).rsplit(":", 1)[-1]
        raise YamlError(line, f"not valid YAML: '{node.value}' is not a valid {kind}") from None
