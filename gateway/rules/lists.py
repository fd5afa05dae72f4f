"""What the rules that read the recipient's lists share: the list names, with
{sender}, {route}, {channel} and {category} filled in for each message."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.model import Message, RuleResult
from gateway.policy.schema import ListsRule
from gateway.rules.base import CompileContext, Rule


@dataclass(eq=False)
class ListRule(Rule):
    lists: tuple[str, ...] = ()
    # The answer for a set of names when it does not depend on the recipient.
    _same: dict[tuple[str, ...], RuleResult] = field(default_factory=dict, repr=False)

    @classmethod
    def compile(cls, spec: ListsRule, ctx: CompileContext) -> ListRule:
        return cls(**cls.base_args(spec), lists=tuple(spec.lists))

    def list_names(self, message: Message) -> list[str]:
        """The rule's lists with {sender}, {route}, {channel}, {category} filled in."""
        values = {
            "sender": message.sender,
            "route": message.route,
            "channel": message.channel.value,
            "category": message.category,
        }
        return [name.format_map(values) for name in self.lists]

    def may_name(self, list_name: str) -> bool:
        """Whether one of the rule's lists is `list_name` for some message:
        a placeholder stands for any name the list names allow."""
        return any(pattern.fullmatch(list_name) for pattern in _patterns(self.lists))

    def names_for_others(self, list_name: str, senders: tuple[str, ...]) -> bool:
        """Whether one of the rule's lists that depends on the sender is
        `list_name` for some sender, but for none of `senders`."""
        for template in self.lists:
            if _pattern(template, None).fullmatch(list_name) and not any(
                _pattern(template, sender).fullmatch(list_name) for sender in senders
            ):
                return True
        return False

    def blocks_when_listed(self) -> bool:
        """Whether the store may refuse to count a send to someone on one of
        the lists (an enforced opt-out); the engine judges the rest."""
        return False

    def judge(self, names: list[str], on_lists: frozenset[str]) -> RuleResult:
        """The result, given the names asked for and those holding the recipient."""
        raise NotImplementedError

    def _kept(self, names: list[str]) -> RuleResult | None:
        """The result kept for these names: one that is the same for every
        recipient it fits (on none of the lists), made once, not per message."""
        return self._same.get(tuple(names))

    def _keep(self, names: list[str], result: RuleResult) -> RuleResult:
        if len(self._same) >= 1024:
            self._same.clear()
        self._same[tuple(names)] = result
        return result


_FILLED = "[A-Za-z0-9._:@-]+"  # what a placeholder may become (a list name's letters)


@lru_cache(maxsize=256)
def _patterns(templates: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Each template as a pattern: its text as it is, a placeholder as any name."""
    patterns = []
    for template in templates:
        parts = string.Formatter().parse(template)
        text = "".join(
            re.escape(lit) + (_FILLED if field is not None else "") for lit, field, _, _ in parts
        )
        patterns.append(re.compile(text))
    return tuple(patterns)


@lru_cache(maxsize=1024)
def _pattern(template: str, sender: str | None) -> re.Pattern[str]:
    """A template that names the sender as a pattern, with {sender} as `sender`
    (None: any sender) and every other placeholder as any name; a template
    that does not name the sender matches nothing."""
    parts = list(string.Formatter().parse(template))
    if not any(name == "sender" for _, name, _, _ in parts):
        return re.compile("(?!)")
    text = ""
    for literal, name, _, _ in parts:
        text += re.escape(literal)
        if name == "sender" and sender is not None:
            text += re.escape(sender)
        elif name is not None:
            text += _FILLED
    return re.compile(text)
