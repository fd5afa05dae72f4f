"""opt_out: the recipient must not be on any of the rule's lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from gateway.model import Code, Message, RuleResult
from gateway.policy.schema import OptOutRule
from gateway.rules.base import CompileContext, Rule


@dataclass(eq=False)
class OptOut(Rule):
    type: ClassVar[str] = "opt_out"
    stateful: ClassVar[bool] = True
    lists: tuple[str, ...] = ()
    _clear: dict[tuple[str, ...], RuleResult] = field(default_factory=dict, repr=False)

    @classmethod
    def compile(cls, spec: OptOutRule, ctx: CompileContext) -> OptOut:
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

    def judge(self, names: list[str], opted_out: frozenset[str]) -> RuleResult:
        matched = [name for name in names if name in opted_out]
        if not matched:
            key = tuple(names)
            if key not in self._clear:  # the same answer for every recipient on no list
                if len(self._clear) >= 1024:
                    self._clear.clear()
                self._clear[key] = self.passed({"lists": names})
            return self._clear[key]
        detail = {"list": matched[0], "lists": names}
        return self.failed(Code.OPTED_OUT, f"recipient opted out ({matched[0]})", detail)
