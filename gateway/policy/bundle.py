"""An immutable snapshot of compiled rules; a reload swaps the whole snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.model import Message
from gateway.rules.base import Rule


@dataclass(frozen=True)
class Bundle:
    version: str  # "sha256:..." over every file read
    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)  # rule id -> (file, line)
    root: Path | None = None

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
