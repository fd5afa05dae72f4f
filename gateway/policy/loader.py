"""Rule files -> a compiled, versioned Bundle, or every problem at once.

Each problem reads `file:line: rule id: field: what is wrong`, quoting the value.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.errors import PolicyError, one_line
from gateway.policy.bundle import Bundle
from gateway.policy.schema import RULE_MODELS, RuleBase
from gateway.policy.yamlfile import Located, YamlError, parse
from gateway.rules import COMPILERS, CompileContext, Rule, RuleConfigError

_FILE_KEYS = ("rules",)


def rule_files(folder: Path, packs: Sequence[str] = ()) -> tuple[list[Path], list[str]]:
    """The files of a bundle: `*.yaml` directly in the folder (not `*.test.yaml`
    nor hidden ones), then those of each pack switched on. Returns (files, problems)."""
    problems: list[str] = []
    if not folder.is_dir():
        return [], [f"{folder}: no such policies folder"]
    files = _yaml_in(folder, folder.parent, problems)
    for pack in packs:
        pack_dir = folder / "packs" / pack
        if not pack_dir.is_dir():
            known = sorted(p.name for p in (folder / "packs").glob("*") if p.is_dir())
            problems.append(
                f"{pack_dir}: no such rule pack '{pack}' (known: {', '.join(known) or 'none'})"
            )
            continue
        files += _yaml_in(pack_dir, folder.parent, problems)
    return files, problems


def _yaml_in(folder: Path, shown_from: Path, problems: list[str]) -> list[Path]:
    """The rule files in `folder`. A name that looks like one but is not a
    regular file is a problem, not skipped: its author expects it loaded.
    Problems name the file from `shown_from`, as the loader's others do."""
    files = []
    for p in sorted(folder.iterdir()):
        if p.suffix not in (".yaml", ".yml") or p.name.endswith((".test.yaml", ".test.yml")):
            continue
        if p.name.startswith("."):  # hidden: an editor's lock or backup (`.#rules.yaml`)
            continue
        name = p.relative_to(shown_from)
        if p.is_file():
            files.append(p)
        elif p.is_symlink() and not p.exists():
            problems.append(f"{name}: a symbolic link to {os.readlink(p)}, which does not exist")
        else:
            problems.append(f"{name}: not a regular file, so it cannot hold rules")
    return files


class _Reader:
    """Reads files once, remembering their bytes for the bundle's version."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: dict[str, bytes] = {}
        self._inside: dict[str, str] = {}  # display name -> path inside the folder

    def name(self, path: Path) -> str:
        try:
            return (
                str(path.relative_to(self.root.parent)) if self.root.parent != path else str(path)
            )
        except ValueError:
            return str(path)

    def read_text(self, path: Path) -> str:
        data = path.read_bytes()
        self.seen[self.name(path)] = data
        try:
            self._inside[self.name(path)] = path.relative_to(self.root).as_posix()
        except ValueError:
            self._inside[self.name(path)] = self.name(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1  # the author's editor shows lines
            raise OSError(f"{self.name(path)}:{line}: not UTF-8 text (byte {exc.start})") from None

    def version(self) -> str:
        """Over the files' contents and their paths inside the policies folder,
        so the same bundle has the same version wherever the folder lives."""
        digest = hashlib.sha256()
        for name in sorted(self.seen, key=self._inside.__getitem__):
            inside = self._inside[name].encode()
            digest.update(inside + b"\0" + hashlib.sha256(self.seen[name]).digest())
        return "sha256:" + digest.hexdigest()


def load_bundle(folder: Path, packs: Sequence[str] = ()) -> Bundle:
    """Load and compile a bundle; raise PolicyError listing every problem."""
    folder = Path(folder)
    files, problems = rule_files(folder, packs)
    reader = _Reader(folder)
    rules: list[Rule] = []
    sources: dict[str, tuple[str, int]] = {}
    for path in files:
        name = reader.name(path)
        for rule_id, rule, line in _load_file(path, name, reader, problems):
            # Also between rules with other problems: each is reported.
            if rule_id in sources:
                first = "{}:{}".format(*sources[rule_id])
                shown = _shorten(rule_id)
                problems.append(f"{name}:{line}: {shown}: id: '{shown}' is already used at {first}")
                continue
            if rule_id is not None:
                sources[rule_id] = (name, line)
            if rule is not None:
                rules.append(rule)
    if problems:
        raise PolicyError(sorted(map(_one_line, problems), key=_reading_order))
    return Bundle(reader.version(), tuple(rules), tuple(reader.seen), sources, folder)


# A problem quoting a huge value keeps this many characters of each end.
_KEEP = 200


def _one_line(problem: str) -> str:
    """Each problem is one line, whatever the values it quotes: line breaks and
    other unprintable characters (a control code, a right-to-left override) are
    shown escaped, and a huge value is cut in the middle."""
    problem = one_line(problem)
    if len(problem) > 3 * _KEEP:
        cut = len(problem) - 2 * _KEEP
        problem = f"{problem[:_KEEP]}…({cut} characters left out)…{problem[-_KEEP:]}"
    return problem


def _reading_order(problem: str) -> tuple[str, int]:
    """Problems sorted by file, then line, as an author reads them."""
    name, _, rest = problem.partition(":")
    line = rest.split(":", 1)[0]
    return name, int(line) if line.isdigit() else 0


def _load_file(
    path: Path, name: str, reader: _Reader, problems: list[str]
) -> list[tuple[str | None, Rule | None, int]]:
    """(id, rule, line) of each rule of the file: the rule None where it has
    problems (added to `problems`), the id None where it has none."""
    try:
        doc = parse(reader.read_text(path))
    except OSError as exc:
        problems.append(str(exc) if str(exc).startswith(name) else f"{name}: {exc}")
        return []
    except YamlError as exc:
        problems.append(f"{name}:{exc.line}: {exc}")
        return []
    items = _rule_items(doc, name, problems)
    ctx = CompileContext(base_dir=path.parent, read_text=reader.read_text, root=reader.root)
    out = []
    for index, item in enumerate(items):
        where = _Where(name, doc, ("rules", index), item)
        rule = _compile_rule(item, where, ctx, problems)
        rule_id = item.get("id") if isinstance(item, dict) else None
        out.append((rule_id if isinstance(rule_id, str) else None, rule, where.line(())))
    return out


def _rule_items(doc: Located, name: str, problems: list[str]) -> list[Any]:
    data = doc.data
    if data is None:
        problems.append(f"{name}:1: the file is empty; it needs a 'rules:' list")
        return []
    if not isinstance(data, dict):
        problems.append(f"{name}:1: the file must be a mapping with a 'rules:' list")
        return []
    for key in data:
        if key not in _FILE_KEYS:
            problems.append(
                f"{name}:{doc.line((key,))}: unknown top-level key '{key}' (expected: rules)"
            )
    rules = data.get("rules")
    if not isinstance(rules, list):
        problems.append(f"{name}:{doc.line(('rules',))}: 'rules' must be a list of rules")
        return []
    return rules


class _Where:
    """Formats a problem for one rule: `file:line: rule id: field: message`."""

    def __init__(self, file: str, doc: Located, path: tuple[str | int, ...], item: Any) -> None:
        self.file, self.doc, self.path = file, doc, path
        rule_id = item.get("id") if isinstance(item, dict) else None
        self.label = (
            _shorten(rule_id) if isinstance(rule_id, str) and rule_id else f"rules[{path[-1]}]"
        )

    def line(self, loc: tuple[str | int, ...]) -> int:
        return self.doc.line((*self.path, *loc))

    def problem(self, loc: tuple[str | int, ...], message: str) -> str:
        field = _field_name(loc)
        prefix = f"{self.file}:{self.line(loc)}: {self.label}: "
        return prefix + (f"{field}: {message}" if field else message)


def _compile_rule(
    item: Any, where: _Where, ctx: CompileContext, problems: list[str]
) -> Rule | None:
    if not isinstance(item, dict):
        problems.append(where.problem((), "each rule must be a mapping with id and type"))
        return None
    model = _model_for(item, where, problems)
    if model is None:
        return None
    try:
        spec = model.model_validate(item)
    except ValidationError as exc:
        problems.extend(where.problem(loc, msg) for loc, msg in _explain(exc, model))
        return None
    try:
        return COMPILERS[item["type"]](spec, ctx)
    except RuleConfigError as exc:
        for each in (exc, *exc.others):
            loc = tuple(
                int(p) if p.isdigit() else p
                for p in each.field.replace("[", ".").replace("]", "").split(".")
            )
            problems.append(where.problem(loc, str(each)))
        return None


def _model_for(item: dict[str, Any], where: _Where, problems: list[str]) -> type[RuleBase] | None:
    kind = item.get("type")
    if kind is None:
        problems.append(where.problem(("type",), f"is required (one of: {', '.join(RULE_MODELS)})"))
        return None
    if not isinstance(kind, str) or kind not in RULE_MODELS:
        known = ", ".join(RULE_MODELS)
        problems.append(where.problem(("type",), f"unknown rule type '{kind}' (known: {known})"))
        return None
    return RULE_MODELS[kind]


def _explain(
    exc: ValidationError, model: type[RuleBase]
) -> list[tuple[tuple[str | int, ...], str]]:
    out = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if not loc and hasattr(model, "whole_rule_field"):
            loc = (model.whole_rule_field,)  # "give terms, terms_file, or both": at terms
        # A value-or-list field fails once per form it may take: one problem
        # (the first form's) is enough for one mistake.
        field = _field_name(loc)
        if field in seen:
            continue
        seen.add(field)
        out.append((loc, _message(error, loc, model)))
    return out


def _message(error: Any, loc: tuple[str | int, ...], model: type[RuleBase]) -> str:
    kind, msg, value = error["type"], str(error["msg"]), error.get("input")
    if kind == "extra_forbidden":
        known = ", ".join(model.model_fields) if len(loc) == 1 else ""
        return f"unknown field '{loc[-1]}'" + (f" (known: {known})" if known else "")
    if kind == "missing":
        return "is required"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "value_error" or isinstance(value, dict):
        return msg
    return f"{msg[0].lower()}{msg[1:]}, got {_quote(value)}"


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return f"'{_shorten(value)}'"
    try:
        return _shorten(repr(value))
    except ValueError:  # an integer too long to print (YAML reads `0xfff...` of any length)
        return f"a number of {value.bit_length()} bits"


def _shorten(text: str, keep: int = 60) -> str:
    """A value as quoted in a problem: a huge one is cut, saying how long it is."""
    return text if len(text) <= keep else f"{text[:keep]}…({len(text)} characters)"


def _field_name(loc: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif (
            part in ("function-after", "function-before", "str", "list[str]", "int") or "[" in part
        ):
            continue  # pydantic's names for union members, not fields
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts)
