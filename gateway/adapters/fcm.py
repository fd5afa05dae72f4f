"""FCM HTTP v1: `POST /v1/projects/{project}/messages:send`, JSON, one device
`token` or one `topic`. Refusals are Google RPC errors, as FCM gives them.

A `condition` send reaches an audience the gateway cannot see, so it is
refused: there is nobody to check opt-outs and caps against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.adapters.base import (
    Answer,
    Context,
    Incoming,
    Item,
    SingleRecipient,
    decode_object,
    explain,
    json_answer,
    opted_out,
)
from gateway.errors import InputError, InvalidRecipient
from gateway.model import Channel, Decision, Message
from gateway.recipients import parse_push

TOP_FIELDS = frozenset({"message", "validate_only"})
MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options"}
    | {"token", "topic", "condition"}
)
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# FcmError.errorCode has its own, smaller set of values.
FCM_CODE = {
    "INVALID_ARGUMENT": "INVALID_ARGUMENT",
    "RESOURCE_EXHAUSTED": "QUOTA_EXCEEDED",
    "UNAVAILABLE": "UNAVAILABLE",
    "DEADLINE_EXCEEDED": "UNAVAILABLE",
    "UNAUTHENTICATED": "THIRD_PARTY_AUTH_ERROR",
}


def _fail(field: str, message: str) -> InputError:
    return InputError(f'Invalid value at "{field}": {message}', {field: message})


def _unknown(data: dict[str, Any], known: frozenset[str], where: str) -> None:
    for name in data:
        if name not in known:
            raise InputError(
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                "Cannot find field.",
                {f"{where}.{name}".lstrip("."): "unknown field"},
            )


def _strings(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _fail(field, "must map names to string values")
    return value


def _target(message: dict[str, Any]) -> tuple[str, str]:
    given = [name for name in ("token", "topic", "condition") if name in message]
    if len(given) != 1:
        raise _fail("message", "give exactly one of token, topic or condition")
    name = given[0]
    if name == "condition":
        raise _fail("message.condition", "the compliance gateway sends to a token or topic only")
    value = message[name]
    if not isinstance(value, str):
        raise _fail(f"message.{name}", "must be a string")
    return name, value if name == "token" else "topic:" + value.removeprefix("/topics/")


def _platform_texts(message: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(where, title or body, value) of each text a platform block sets in
    place of message.notification's."""
    found: list[tuple[str, str, Any]] = []

    def block(where: str, value: Any) -> None:
        if isinstance(value, dict):
            found.extend(
                (f"{where}.{key}", key, value[key]) for key in ("title", "body") if key in value
            )

    android, apns, webpush = (message.get(name) for name in ("android", "apns", "webpush"))
    if isinstance(android, dict):
        block("message.android.notification", android.get("notification"))
    if isinstance(webpush, dict):
        block("message.webpush.notification", webpush.get("notification"))
    if isinstance(apns, dict) and isinstance(apns.get("payload"), dict):
        aps = apns["payload"].get("aps")
        alert = aps.get("alert") if isinstance(aps, dict) else None
        if isinstance(alert, str):
            found.append(("message.apns.payload.aps.alert", "body", alert))
        block("message.apns.payload.aps.alert", alert)
    return found


def _one_text(message: dict[str, Any], notification: dict[str, str]) -> None:
    """A platform may show its own title or body instead of the notification's:
    the policies judge one text, so another one is refused."""
    for where, key, value in _platform_texts(message):
        if value != notification.get(key):
            raise _fail(
                where,
                f"differs from message.notification.{key}: the compliance gateway judges"
                " one text, so give it there only",
            )


# Texts a platform shows beside the title and body, and the arguments that
# fill a localized title or body (the string itself is in the app). FCM
# takes its fields in lowerCamelCase too, as proto3 JSON does.
_ANDROID_SHOWN = ("ticker", "title_loc_args", "titleLocArgs", "body_loc_args", "bodyLocArgs")
_APNS_SHOWN = ("subtitle", "title-loc-args", "subtitle-loc-args", "loc-args")


def _shown_beside(message: dict[str, Any]) -> list[str]:
    """What else a platform block makes the device show, to be judged with the body."""
    found: list[tuple[str, Any]] = []
    android, apns, webpush = (message.get(name) for name in ("android", "apns", "webpush"))
    if isinstance(android, dict) and isinstance(android.get("notification"), dict):
        shown, where = android["notification"], "message.android.notification."
        found += [(where + key, shown[key]) for key in _ANDROID_SHOWN if key in shown]
    if isinstance(apns, dict) and isinstance(apns.get("payload"), dict):
        aps = apns["payload"].get("aps")
        alert = aps.get("alert") if isinstance(aps, dict) else None
        if isinstance(alert, dict):
            where = "message.apns.payload.aps.alert."
            found += [(where + key, alert[key]) for key in _APNS_SHOWN if key in alert]
    if isinstance(webpush, dict) and isinstance(webpush.get("notification"), dict):
        actions = webpush["notification"].get("actions")  # the buttons' labels
        for n, action in enumerate(actions if isinstance(actions, list) else []):
            if isinstance(action, dict) and "title" in action:
                found.append((f"message.webpush.notification.actions.{n}.title", action["title"]))
    texts: list[str] = []
    for where, value in found:
        if where.lower().endswith("args"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _fail(where, "must be a list of strings")
            texts.extend(value)
        elif isinstance(value, str):
            texts.append(value)
        else:
            raise _fail(where, "must be a string")
    return texts


class FcmAdapter(SingleRecipient):
    name = "fcm"
    # Google's system parameters for the answer's format and the quota, which
    # Google's generated clients add: none is a part of the message. Not the
    # credentials (key, access_token): the sender is known by Authorization.
    query = frozenset({"alt", "prettyPrint", "fields", "quotaUser", "$.xgafv"})

    def items(self, incoming: Incoming, context: Context) -> list[Item]:
        data = decode_object(incoming.body)
        _unknown(data, TOP_FIELDS, "")
        message = data.get("message")
        if not isinstance(message, dict):
            raise _fail("message", "required, an object")
        _unknown(message, MESSAGE_FIELDS, "message")
        name, target = _target(message)
        notification = _strings(message.get("notification"), "message.notification")
        _unknown(notification, NOTIFICATION_FIELDS, "message.notification")
        _one_text(message, notification)
        _strings(message.get("data"), "message.data")
        try:
            recipient = parse_push(target)
        except InvalidRecipient:
            error = _fail(f"message.{name}", "not a valid registration token or topic")
            error.unparsed = (Channel.PUSH.value, target)
            raise error from None
        normalized = Message(
            channel=Channel.PUSH,
            recipient=recipient,
            body="\n".join(t for t in (notification.get("body"), *_shown_beside(message)) if t),
            sender=context.sender,
            route=context.route,
            category=context.category,
            title=notification.get("title"),
            tags=context.tags,
            recipient_timezone=context.timezone,
        )
        return [Item(normalized, f"message.{name}")]

    def dry_run(self, incoming: Incoming) -> bool:
        return decode_object(incoming.body).get("validate_only") is True

    def held(self, incoming: Incoming, decisions: Sequence[Decision]) -> Answer:
        """FCM's success shape, with the gateway's id as the message id."""
        project = incoming.params.get("project", "")
        return json_answer(200, {"name": f"projects/{project}/messages/{decisions[0].decision_id}"})

    def refused(self, items: Sequence[Item], decisions: Sequence[Decision], capped: bool) -> Answer:
        decision = decisions[0]
        if capped:
            status, rpc = 429, "RESOURCE_EXHAUSTED"
        else:
            status, rpc = 400, "FAILED_PRECONDITION" if opted_out(decision) else "INVALID_ARGUMENT"
        return _error(status, rpc, explain(decision), [_info(decision)])

    def error(self, status: int, message: str) -> Answer:
        return _error(status, RPC_STATUS.get(status, "UNKNOWN"), message)

    def bad_input(self, error: InputError, decision: Decision | None = None) -> Answer:
        if decision is None:
            return self.error(error.status, str(error))
        return _error(error.status, "INVALID_ARGUMENT", str(error), [_info(decision)])


def _info(decision: Decision) -> dict[str, Any]:
    """A google.rpc.ErrorInfo naming the decision and the rules that refused."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": decision.reasons[0].code.value.upper() if decision.reasons else "REFUSED",
        "domain": "compliance-gateway",
        "metadata": {
            "decision_id": decision.decision_id,
            "rules": ",".join(r.rule for r in decision.reasons),
        },
    }


def _error(status: int, rpc: str, message: str, details: list[Any] | None = None) -> Answer:
    fcm = {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": FCM_CODE.get(rpc, "UNSPECIFIED_ERROR"),
    }
    error = {"code": status, "message": message, "status": rpc, "details": [fcm, *(details or [])]}
    return json_answer(status, {"error": error})


ADAPTER = FcmAdapter()
