"""An immutable snapshot of compiled rules; a reload swaps the whole snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gateway.model import Message
from gateway.rules.base import Rule, national_number


@dataclass(frozen=True)
class Bundle:
    version: str  # "sha256:..." over every file read
    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)  # rule id -> (file, line)
    root: Path | None = None
    # Answers worked out from the rules alone, kept as long as the bundle is.
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def _area_digits(self) -> int:
        return max(
            (len(code) for rule in self.rules for code in rule.area_codes()),
            default=0,
        )

    def shape_key(self, message: Message) -> tuple[object, ...]:
        """Equal for two messages that every rule condition and opt-out list name
        treats alike (they read nothing else of a message)."""
        area = None
        if self._area_digits:
            national = national_number(message)
            area = national[: self._area_digits] if national is not None else None
        return (
            message.channel,
            message.category,
            message.sender,
            message.route,
            message.recipient.country,
            message.tags,
            area,
        )

    def rules_for(self, message: Message) -> list[tuple[Rule, bool]]:
        """Every rule, in bundle order, with whether it applies to the message."""
        return [(rule, rule.applies(message)) for rule in self.rules]

    def describe(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for rule in self.rules:
            file, line = self.sources.get(rule.id, ("", 0))
            out.append(
                {
                    "id": rule.id,
                    "type": rule.type,
                    "action": rule.action.value,
                    "file": file,
                    "line": line,
                }
            )
        return out


EMPTY = Bundle(version="sha256:empty", rules=())


def route_warnings(bundle: Bundle, routes: list[str]) -> list[str]:
    """Rules whose `match` or `unless` names a route the configuration does
    not have (routes come from the config, not the policies, so a bundle is
    not refused for it): each such condition can never hold."""
    found = []
    for rule in bundle.rules:
        for key, condition in (("match", rule.match), ("unless", rule.unless)):
            if condition is None:
                continue
            unknown = sorted(condition.values("route") - set(routes))
            if unknown:
                found.append(
                    f"rule {rule.id}: {key}.route names {', '.join(unknown)}, not a route of"
                    f" the configuration ({', '.join(routes)}): no message comes by it"
                )
    return found
