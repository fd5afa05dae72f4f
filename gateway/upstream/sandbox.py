"""The built-in sink: answers 201 and keeps what it received, newest first."""

from __future__ import annotations

import json
from collections import deque
from datetime import UTC, datetime
from typing import Any

from gateway.ids import new_id
from gateway.model import iso
from gateway.upstream.base import Outbound, Reply


class Sandbox:
    def __init__(self, keep: int = 1000) -> None:
        self._received: deque[dict[str, Any]] = deque(maxlen=keep)

    async def send(self, request: Outbound) -> Reply:
        message_id = "SB" + new_id()
        try:
            body: Any = json.loads(request.body)
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        self._received.appendleft(
            {
                "id": message_id,
                "received_at": iso(datetime.now(UTC)),
                "method": request.method,
                "body": body,
            }
        )
        answer = json.dumps({"id": message_id, "status": "accepted"}).encode()
        headers = (("content-type", "application/json"),)
        return Reply(201, headers, answer, 0.0, message_id)

    def messages(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._received)[:limit]

    async def close(self) -> None:
        return None
