"""consent: the recipient must be on at least one of the rule's lists (an
opt-in: prior express consent for marketing, CASL's consent, a double
opt-in list). The lists are kept as opt-out lists are, by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gateway.model import Code, RuleResult
from gateway.rules.lists import ListRule


@dataclass(eq=False)
class Consent(ListRule):
    type: ClassVar[str] = "consent"
    stateful: ClassVar[bool] = True

    def judge(self, names: list[str], on_lists: frozenset[str]) -> RuleResult:
        matched = [name for name in names if name in on_lists]
        if matched:
            return self.passed({"list": matched[0], "lists": names})
        kept = self._kept(names)
        if kept is None:
            reason = f"no consent on record ({' or '.join(names)})"
            kept = self._keep(names, self.failed(Code.NO_CONSENT, reason, {"lists": names}))
        return kept
