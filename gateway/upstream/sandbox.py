"""The built-in sink: answers 201 and keeps what it received, newest first."""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

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
        kind, _, path = request.url.removeprefix("sandbox").removeprefix(":").partition("/")
        if kind in _PROVIDERS:
            reply = _PROVIDERS[kind]("/" + path, body)
            message_id = reply.message_id or message_id
        self._received.appendleft(
            {
                "id": message_id,
                "received_at": iso(datetime.now(UTC)),
                "method": request.method,
                "body": body,
            }
        )
        if kind in _PROVIDERS:
            return reply
        answer = json.dumps({"id": message_id, "status": "accepted"}).encode()
        headers = (("content-type", "application/json"),)
        return Reply(201, headers, answer, 0.0, message_id)

    def messages(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._received)[:limit]

    async def close(self) -> None:
        return None


# Drop-in routes (url "sandbox:<adapter>/<path>") get their provider's success answer.
def _twilio(path: str, form: Any) -> Reply:
    sid = "SM" + uuid.uuid4().hex
    fields = dict(parse_qsl(form)) if isinstance(form, str) else {}
    answer = {"sid": sid, "status": "queued", "to": fields.get("To"), "from": fields.get("From")}
    answer |= {"body": fields.get("Body"), "uri": path.removesuffix(".json") + f"/{sid}.json"}
    data = json.dumps(answer).encode()
    return Reply(201, (("content-type", "application/json"),), data, 0.0, sid)


def _sendgrid(path: str, body: Any) -> Reply:
    message_id = uuid.uuid4().hex
    return Reply(202, (("x-message-id", message_id),), b"", 0.0, message_id)


def _fcm(path: str, body: Any) -> Reply:
    project = path.split("/")[3] if path.count("/") >= 3 else "sandbox"
    name = f"projects/{project}/messages/{uuid.uuid4().hex}"
    answer = json.dumps({"name": name}).encode()
    return Reply(200, (("content-type", "application/json"),), answer, 0.0, name)


_PROVIDERS: dict[str, Callable[[str, Any], Reply]] = {
    "twilio": _twilio,
    "sendgrid": _sendgrid,
    "fcm": _fcm,
}
