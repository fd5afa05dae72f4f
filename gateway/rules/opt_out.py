"""opt_out: the recipient must not be on any of the rule's lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gateway.model import Code, RuleResult
from gateway.rules.lists import ListRule


@dataclass(eq=False)
class OptOut(ListRule):
    type: ClassVar[str] = "opt_out"
    stateful: ClassVar[bool] = True

    def blocks_when_listed(self) -> bool:
        return self.enforced

    def judge(self, names: list[str], on_lists: frozenset[str]) -> RuleResult:
        matched = [name for name in names if name in on_lists]
        if not matched:
            return self._kept(names) or self._keep(names, self.passed({"lists": names}))
        detail = {"list": matched[0], "lists": names}
        return self.failed(Code.OPTED_OUT, f"recipient opted out ({matched[0]})", detail)
