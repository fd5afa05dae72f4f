"""banned_terms and required_text: normalized term matching, compiled at load."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from gateway.model import Code, RuleResult
from gateway.policy.schema import BannedTermsRule, RequiredTextRule, term_fault
from gateway.rules.base import (
    CHANNEL_FIELDS,
    CompileContext,
    PureRule,
    RuleConfigError,
    TextCache,
)
from gateway.text.terms import TermError, TermMatcher, load_terms_file


def _compile(terms: list[str], field: str) -> TermMatcher:
    """The matcher over terms the schema (or the terms file's reader) has checked."""
    try:
        return TermMatcher.compile(terms)
    except TermError as exc:
        raise RuleConfigError(f"{field}[{exc.index}]", str(exc)) from None


def _file_terms(spec: BannedTermsRule, ctx: CompileContext) -> list[str]:
    if not spec.terms_file:
        return []
    if "\0" in spec.terms_file:  # no file can have it; the OS call would raise ValueError
        raise RuleConfigError("terms_file", f"{spec.terms_file!r} is not a file name")
    name = spec.terms_file
    if Path(name).is_absolute():
        raise RuleConfigError(
            "terms_file",
            f"'{name}' is an absolute path; write a path relative to this rule file,"
            " inside the policies folder",
        )
    path = ctx.base_dir / name
    # Symlinks are resolved first, so a link cannot lead outside the folder
    # either; `..` that stays inside (a pack naming a shared file) is fine.
    try:
        target = path.resolve()
    except RuntimeError:  # a symlink loop (Python before 3.13 raises this, not OSError)
        raise RuleConfigError("terms_file", f"'{name}' is a symlink loop") from None
    if not target.is_relative_to(ctx.policies_dir.resolve()):
        raise RuleConfigError(
            "terms_file", f"'{name}' is outside the policies folder; a terms file must be inside it"
        )
    try:
        if path.exists() and not path.is_file():
            # A folder fails to read, but a FIFO or /dev/zero would block the load
            # or fill the memory: only regular files are read (as for rule files).
            raise OSError("not a regular file")
        lines = load_terms_file(path)
        ctx.read_text(path)  # counted in the bundle's version
    except TermError as exc:
        raise RuleConfigError("terms_file", str(exc)) from None
    except OSError as exc:  # as load_terms_file words its own
        why = exc.strerror or str(exc)
        raise RuleConfigError("terms_file", f"cannot read terms file '{path}': {why}") from None
    RuleConfigError.raise_all(
        [
            RuleConfigError("terms_file", f"terms file '{path}' line {number}: {fault}")
            for number, term in lines
            if (fault := term_fault(term)) is not None
        ]
    )
    if not lines and not spec.terms:  # the rule could never fire
        raise RuleConfigError("terms_file", f"terms file '{name}' holds no terms")
    return [term for _, term in lines]


@dataclass(eq=False)
class BannedTerms(PureRule):
    type: ClassVar[str] = "banned_terms"
    reads_texts_only: ClassVar[bool] = True
    matcher: TermMatcher | None = None
    fields: tuple[str, ...] = ("body",)
    term_count: int = 0
    _clean: RuleResult | None = dataclass_field(default=None, repr=False)

    @classmethod
    def compile(cls, spec: BannedTermsRule, ctx: CompileContext) -> BannedTerms:
        terms = list(spec.terms) + _file_terms(spec, ctx)
        return cls(
            **cls.base_args(spec),
            matcher=_compile(terms, "terms"),
            fields=tuple(spec.fields),
            term_count=len(terms),
        )

    def check(self, texts: TextCache, now: datetime) -> RuleResult:
        assert self.matcher is not None
        for field in self.fields:
            norm = texts.normalized(field)
            if norm is None:
                continue
            found = self.matcher.first_normalized(norm)
            if found is not None:
                detail = {"field": field, "term": found.term, "offset": found.offset}
                message = f"{field} contains banned term '{found.term}' at offset {found.offset}"
                return self.failed(Code.BANNED_TERM, message, detail)
        if self._clean is None:  # the same answer for every clean message
            self._clean = self.passed({"terms": self.term_count})
        return self._clean


@dataclass(eq=False)
class RequiredText(PureRule):
    type: ClassVar[str] = "required_text"
    reads_texts_only: ClassVar[bool] = True
    matcher: TermMatcher | None = None
    terms: tuple[str, ...] = ()
    all_of: bool = False
    field: str = "body"

    @classmethod
    def compile(cls, spec: RequiredTextRule, ctx: CompileContext) -> RequiredText:
        terms = spec.all_of if spec.all_of is not None else spec.any_of or []
        name = "all_of" if spec.all_of is not None else "any_of"
        return cls(
            **cls.base_args(spec),
            matcher=_compile(terms, name),
            terms=tuple(terms),
            all_of=spec.all_of is not None,
            field=spec.field,
        )

    def check(self, texts: TextCache, now: datetime) -> RuleResult:
        assert self.matcher is not None
        if self.field not in CHANNEL_FIELDS[texts.message.channel]:
            return self.skipped()  # an SMS has no subject: nothing is missing from it
        norm = texts.normalized(self.field)
        found = self.matcher.found_normalized(norm) if norm is not None else {}
        missing = [t for i, t in enumerate(self.terms) if i not in found]
        ok = not missing if self.all_of else bool(found)
        if ok:
            first = min(found.values(), key=lambda m: m.offset)
            return self.passed({"field": self.field, "term": first.term, "offset": first.offset})
        detail = {"field": self.field, "term": None, "offset": None, "missing": missing}
        quoted = ", ".join(f"'{t}'" for t in missing)
        need = "all of" if self.all_of else "one of"
        return self.failed(
            Code.MISSING_REQUIRED_TEXT, f"{self.field} must contain {need}: {quoted}", detail
        )
