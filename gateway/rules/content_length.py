"""content_length: segments as carriers count them, characters, bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from gateway.model import Channel, Code, RuleResult
from gateway.policy.schema import ContentLengthRule
from gateway.rules.base import CompileContext, PureRule, TextCache
from gateway.text.sms import sms_segments


@dataclass(eq=False)
class ContentLength(PureRule):
    type: ClassVar[str] = "content_length"
    reads_texts_only: ClassVar[bool] = True
    field: str = "body"
    max_segments: int | None = None
    max_chars: int | None = None
    max_bytes: int | None = None

    @classmethod
    def compile(cls, spec: ContentLengthRule, ctx: CompileContext) -> ContentLength:
        return cls(
            **cls.base_args(spec),
            field=spec.field,
            max_segments=spec.max_segments,
            max_chars=spec.max_chars,
            max_bytes=spec.max_bytes,
        )

    def check(self, texts: TextCache, now: datetime) -> RuleResult:
        text = texts.message.text(self.field)
        if text is None:
            return self.skipped()
        # Segments are what carriers bill an SMS by; other channels have none.
        sms = texts.message.channel is Channel.SMS
        if not sms and self.max_chars is None and self.max_bytes is None:
            return self.skipped()
        detail: dict[str, Any] = texts.remember(
            ("length", self.field, sms), lambda: self._measure(text, sms)
        )
        for limit, key, unit in (
            (self.max_segments if sms else None, "segments", "segments"),
            (self.max_chars, "chars", "characters"),
            (self.max_bytes, "bytes", "bytes"),
        ):
            if limit is not None and detail[key] > limit:
                size = f"{detail[key]} {unit}{self._why(detail)}"
                why = f"{self.field} is {size}, over the {limit} allowed"
                return self.failed(Code.CONTENT_TOO_LONG, why, detail | {"limit": {key: limit}})
        return self.passed(detail)

    def _measure(self, text: str, sms: bool) -> dict[str, Any]:
        """Shared by every length rule on the field: never changed in place."""
        detail: dict[str, Any] = {
            "field": self.field,
            "chars": len(text),
            "bytes": len(text.encode("utf-8", "surrogatepass")),
        }
        if sms:
            info = sms_segments(text)
            detail.update(encoding=info.encoding, segments=info.segments)
            if info.non_gsm:
                detail["non_gsm"] = [{"offset": at, "char": ch} for at, ch in info.non_gsm]
        return detail

    @staticmethod
    def _why(detail: dict[str, Any]) -> str:
        """Name the character that forced UCS-2: it is what tripled the cost."""
        first = (detail.get("non_gsm") or [None])[0]
        if first is None:
            return ""
        return f" ({detail['encoding']}: {first['char']!r} at {first['offset']} is not in GSM-7)"
