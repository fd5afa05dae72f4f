"""Rule files -> a compiled, versioned Bundle, or every problem at once.

Each problem reads `file:line: rule id: field: what is wrong`, quoting the value.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.errors import PolicyError, one_line
from gateway.policy.bundle import Bundle
from gateway.policy.schema import RULE_MODELS, RuleBase
from gateway.policy.yamlfile import Located, YamlError, parse
from gateway.rules import COMPILERS, CompileContext, Rule, RuleConfigError

_FILE_KEYS = ("rules",)


def is_test_file(name: str) -> bool:
    """A file of policy test cases: `*.test.yaml` or `*.test.yml`, in any case."""
    return name.lower().endswith((".test.yaml", ".test.yml"))


def is_rule_file(name: str) -> bool:
    """A file of rules: `*.yaml` or `*.yml` in any case, not a test file, not
    hidden (an editor's lock or backup, `.#rules.yaml`)."""
    return (
        name.lower().endswith((".yaml", ".yml"))
        and not is_test_file(name)
        and not name.startswith(".")
    )


def rule_files(
    folder: Path, packs: Sequence[str] = (), *, own: bool = True
) -> tuple[list[Path], list[str]]:
    """The files of a bundle: the rule files directly in the folder (unless
    not `own`), then those of each pack switched on. Returns (files, problems)."""
    problems: list[str] = []
    if not folder.is_dir():
        return [], [f"{folder}: no such policies folder"]
    files = _yaml_in(folder, folder.parent, problems) if own else []
    for index, pack in enumerate(packs):
        pack_dir = folder / "packs" / pack
        if pack in packs[:index]:
            # Its rules loaded twice would each clash with themselves.
            problems.append(f"{pack_dir}: rule pack '{pack}' is listed twice")
            continue
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
        if not is_rule_file(p.name):
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


def load_bundle(folder: Path, packs: Sequence[str] = (), *, own: bool = True) -> Bundle:
    """Load and compile a bundle; raise PolicyError listing every problem.
    Without `own`, only the packs' rules: a pack alone, as its tests see it,
    still inside the policies folder (a terms file it shares is found)."""
    folder = Path(folder)
    files, problems = rule_files(folder, packs, own=own)
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
        doc = parse(reader.read_text(path), keep_first=True)
    except OSError as exc:
        problems.append(str(exc) if str(exc).startswith(name) else f"{name}: {exc}")
        return []
    except YamlError as exc:
        problems.append(f"{name}:{exc.line}: {exc}")
        return []
    items = _rule_items(doc, name, problems)
    problems.extend(_repeated(name, doc, items, path, line) for path, line in doc.repeated)
    ctx = CompileContext(base_dir=path.parent, read_text=reader.read_text, root=reader.root)
    out = []
    for index, item in enumerate(items):
        where = _Where(name, doc, ("rules", index), item)
        rule = _compile_rule(item, where, ctx, problems)
        rule_id = item.get("id") if isinstance(item, dict) else None
        out.append((rule_id if isinstance(rule_id, str) else None, rule, where.line(())))
    return out


def _repeated(
    name: str, doc: Located, items: list[Any], path: tuple[str | int, ...], line: int
) -> str:
    """A key given twice, named with its rule when it is inside one."""
    why = f"is given twice (first on line {doc.line(path)})"
    if len(path) > 2 and path[0] == "rules" and isinstance(path[1], int) and path[1] < len(items):
        return _Where(name, doc, path[:2], items[path[1]]).problem(path[2:], why, line)
    return f"{name}:{line}: '{path[-1]}' {why}"


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

    def problem(self, loc: tuple[str | int, ...], message: str, line: int | None = None) -> str:
        field = field_name(loc)
        prefix = f"{self.file}:{line or self.line(loc)}: {self.label}: "
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
        found = [where.problem(loc, msg) for loc, msg in explain(exc, model, item)]
        # The rest is checked and compiled too, so that one mistake does not
        # hide another: a whole-rule check that pydantic skips once a field
        # fails ("give terms, terms_file, or both"), or a terms file's.
        failed = {error["loc"][0] for error in exc.errors() if error["loc"]}
        rest = {k: v for k, v in item.items() if k not in failed}
        try:
            _compile_spec(model.model_validate(rest), item["type"], where, ctx, problems)
        except ValidationError as more:
            found += [
                where.problem(loc, msg)
                for loc, msg in explain(more, model, rest)
                # Only the whole rule's, and none about a field taken away: that
                # one now reads as missing, and its own problem is listed already.
                if loc == (getattr(model, "whole_rule_field", None),)
                and not any(str(name) in msg for name in failed)
            ]
        problems.extend(dict.fromkeys(found))
        return None
    return _compile_spec(spec, item["type"], where, ctx, problems)


def _compile_spec(
    spec: RuleBase, kind: str, where: _Where, ctx: CompileContext, problems: list[str]
) -> Rule | None:
    try:
        return COMPILERS[kind](spec, ctx)
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
        problems.append(
            where.problem(("type",), f"unknown rule type {_quote(kind)} (known: {known})")
        )
        return None
    return RULE_MODELS[kind]


def explain(
    exc: ValidationError, model: type[BaseModel], data: Any
) -> list[tuple[tuple[str | int, ...], str]]:
    """(where, what is wrong) for each problem pydantic found in `data`, worded
    for an author: the value quoted, one problem per mistake."""
    out = []
    seen: set[str] = set()
    for error in _in_form_given(exc.errors(include_url=False), data):
        loc = tuple(part for part in error["loc"] if not _is_member(part))
        if not loc and hasattr(model, "whole_rule_field"):
            loc = (model.whole_rule_field,)  # "give terms, terms_file, or both": at terms
        # A field fails once per form it may take that the value could be read
        # as: one problem is enough for one mistake.
        field = field_name(loc)
        if field in seen:
            continue
        seen.add(field)
        out.append((loc, _message(error, loc, model)))
    return out


def _in_form_given(errors: list[Any], data: Any) -> list[Any]:
    """A field that takes one value or a list fails once per form; keep the
    errors of the form the author wrote (a list's items, or the one value)."""
    kept = []
    for error in errors:
        loc = error["loc"]
        member = next((i for i, part in enumerate(loc) if _is_member(part)), None)
        if member is None:
            kept.append(error)
            continue
        given = _value_at(data, loc[:member])
        if isinstance(given, list) == loc[member].startswith("list["):
            kept.append(error)
    return kept or errors


def _value_at(data: Any, loc: tuple[str | int, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


# How pydantic names a type that a YAML author knows as a mapping.
_MAPPING_ERRORS = ("model_type", "model_attributes_type", "dict_type")


def _message(error: Any, loc: tuple[str | int, ...], model: type[BaseModel]) -> str:
    kind, msg, value = error["type"], str(error["msg"]), error.get("input")
    if kind == "extra_forbidden":
        inner = _model_at(model, loc[:-1])
        known = (
            ", ".join(f.alias or name for name, f in inner.model_fields.items()) if inner else ""
        )
        return f"unknown field '{loc[-1]}'" + (f" (known: {known})" if known else "")
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "too_short" and value == []:
        return "is empty; give at least one"
    if kind in _MAPPING_ERRORS:
        msg = "input should be a mapping"
    msg = msg.removeprefix("Assertion failed, ")
    return f"{msg[0].lower()}{msg[1:]}, got {_quote(value)}"


def _model_at(model: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model of the mapping at `path` inside `model` (match, a window's
    part...), or None when it is not one model."""
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        found = [
            kind
            for kind in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(kind, type) and issubclass(kind, BaseModel)
        ]
        if len(found) != 1:
            return None
        model = found[0]
    return model


def _quote(value: Any) -> str:
    """A value as the author wrote it in YAML: `true`, `null`, `[opt_out]`
    (JSON's flow style, which YAML reads alike), not Python's `True`."""
    if isinstance(value, str):
        return f"'{_shorten(value)}'"
    try:
        return _shorten(json.dumps(value, ensure_ascii=False, default=str))
    except ValueError:  # an integer too long to print (YAML reads `0xfff...` of any length)
        return f"a number of {value.bit_length()} bits"


def _shorten(text: str, keep: int = 60) -> str:
    """A value as quoted in a problem: a huge one is cut, saying how long it is."""
    return text if len(text) <= keep else f"{text[:keep]}…({len(text)} characters)"


def _is_member(part: str | int) -> bool:
    """Whether a part of pydantic's error location names a member of a union
    (`str`, `list[str]`, `function-after[...]`), not a field."""
    return isinstance(part, str) and (
        part in ("function-after", "function-before", "str", "int") or "[" in part
    )


def field_name(loc: tuple[str | int, ...]) -> str:
    """`limits[0].per` for ("limits", 0, "per")."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts)
