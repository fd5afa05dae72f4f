"""The upstream contract: send one request, get the upstream's answer or an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Outbound:
    """A request to forward, as the sender made it (minus the gateway's own headers)."""

    method: str
    url: str  # "sandbox" or a full URL built from the configured upstream
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    latency_ms: float
    message_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class Upstream(Protocol):
    async def send(self, request: Outbound) -> Reply:
        """Forward the request. Raise UpstreamUnreachable when nothing was sent,
        UpstreamTimeout when it went out and no answer came in time."""
        ...

    async def close(self) -> None: ...
