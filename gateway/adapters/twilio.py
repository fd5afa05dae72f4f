"""Twilio's Messages API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
form-encoded, one recipient in `To`. Refusals are Twilio error JSON, which the
official SDKs raise as TwilioRestException with the code and message below."""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import format_datetime
from urllib.parse import parse_qsl

from gateway.adapters.base import (
    Answer,
    Context,
    Incoming,
    Item,
    SingleRecipient,
    decode_text,
    explain,
    json_answer,
    loads,
    lone_surrogate,
    opted_out,
)
from gateway.errors import InputError, InvalidRecipient
from gateway.model import Channel, Decision, Message, iso
from gateway.recipients import parse_phone

MAX_FIELDS = 200  # a message has a few dozen parameters at most
OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
TOO_MANY = 20429
BAD_VARIABLES = 21656  # "The ContentVariables Parameter is invalid"
FILTERED = 30007  # "Message filtered": Twilio's own code for a refused content
_LEADS = {
    OPTED_OUT: "Attempt to send to unsubscribed recipient",
    TOO_MANY: "Too Many Requests",
    FILTERED: "Message filtered",
}


class TwilioInputError(InputError):
    """A request Twilio itself would refuse, with Twilio's error code."""

    def __init__(self, code: int, message: str, field: str) -> None:
        super().__init__(message, {field: message})
        self.code = code


def parse_form(raw: bytes) -> dict[str, list[str]]:
    try:
        # strict: a percent-escape that is not UTF-8 would be judged as U+FFFD
        # while its bytes go upstream as they are.
        pairs = parse_qsl(
            decode_text(raw), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except UnicodeDecodeError:
        why = "the form cannot be read: a value is not UTF-8 text once its %-escapes are decoded"
        raise TwilioInputError(20400, why, "body") from None
    except ValueError as exc:
        raise TwilioInputError(20400, f"the form cannot be read: {exc}", "body") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise TwilioInputError(20400, f"'{name}' is given {len(values)} times", name)
    return values[0]


def _filled(form: dict[str, list[str]]) -> list[str]:
    """The values of ContentVariables, which fill the content template named by
    ContentSid. The template's own text is not in the request; what fills it
    is, and it is judged with Body, each value on a line of its own."""
    raw = _one(form, "ContentVariables")
    if raw is None:
        return []
    try:
        variables = loads(raw)
    except InputError as exc:
        why = f"The ContentVariables Parameter is invalid: {str(exc).replace('the body', 'it')}"
        raise TwilioInputError(BAD_VARIABLES, why, "ContentVariables") from None
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        why = "The ContentVariables Parameter is invalid: it must map names to string values"
        raise TwilioInputError(BAD_VARIABLES, why, "ContentVariables")
    for name, value in variables.items():
        if problem := lone_surrogate(value):
            why = f"The ContentVariables Parameter is invalid: {name!a}: {problem}"
            raise TwilioInputError(BAD_VARIABLES, why, "ContentVariables")
    return list(variables.values())


def _recipient(to: str | None) -> str:
    if not to:
        raise TwilioInputError(21604, "A 'To' phone number is required.", "To")
    return to.removeprefix("whatsapp:")


# The Messages API's parameters. One that differs from these only in case
# is refused: the gateway would ignore it, and Twilio might read it.
PARAMETERS = frozenset(
    {"To", "From", "MessagingServiceSid", "Body", "MediaUrl", "ContentSid", "ContentVariables"}
    | {"StatusCallback", "ApplicationSid", "MaxPrice", "ProvideFeedback", "Attempt"}
    | {"ValidityPeriod", "ForceDelivery", "ContentRetention", "AddressRetention"}
    | {"SmartEncoded", "PersistentAction", "ShortenUrls", "ScheduleType", "SendAt"}
    | {"SendAsMms", "Tags", "RiskCheck", "TrafficType"}
)
_FOLDED = {name.lower(): name for name in PARAMETERS}
FORM = "application/x-www-form-urlencoded"


def _readable(incoming: Incoming, form: dict[str, list[str]]) -> None:
    """InputError for a request Twilio might read otherwise than the gateway:
    declared as another type than a form, or with a parameter in another case."""
    declared = incoming.header("content-type")
    if declared is not None and declared.split(";")[0].strip().lower() != FORM:
        raise TwilioInputError(20400, f"Content-Type must be {FORM}", "Content-Type")
    for name in form:
        meant = _FOLDED.get(name.lower())
        if meant is not None and meant != name:
            raise TwilioInputError(
                20400, f"'{name}' is not a parameter; Twilio's is '{meant}'", name
            )


class TwilioAdapter(SingleRecipient):
    name = "twilio"
    query: frozenset[str] = frozenset()

    def items(self, incoming: Incoming, context: Context) -> list[Item]:
        form = parse_form(incoming.body)
        _readable(incoming, form)
        for later in ("SendAt", "ScheduleType"):
            # Twilio would deliver at SendAt, after the gateway judged now:
            # the time windows would not hold. The gateway holds messages itself.
            if later in form:
                why = f"{later}: not taken: the compliance gateway decides when a message goes"
                raise InputError(why, {later: "not taken"})
        to = _recipient(_one(form, "To"))
        origin = _one(form, "From") or _one(form, "MessagingServiceSid")
        if not origin:
            raise TwilioInputError(21603, "A 'From' phone number is required.", "From")
        body, filled = _one(form, "Body"), _filled(form)
        if not body and not form.get("MediaUrl") and not _one(form, "ContentSid"):
            raise TwilioInputError(21602, "Message body is required.", "Body")
        try:
            recipient = parse_phone(to)
        except InvalidRecipient:
            error = TwilioInputError(
                21211, f"The 'To' number {to} is not a valid phone number.", "To"
            )
            error.unparsed = (Channel.SMS.value, to)
            raise error from None
        message = Message(
            channel=Channel.SMS,
            recipient=recipient,
            body="\n".join(text for text in (body, *filled) if text),
            sender=context.sender,
            route=context.route,
            category=context.category,
            from_=origin,
            tags=context.tags,
            recipient_timezone=context.timezone,
        )
        return [Item(message, "To")]

    def held(self, incoming: Incoming, decisions: Sequence[Decision]) -> Answer:
        """A message resource with `"status": "scheduled"` whose sid is the
        gateway's id (the SDK reads `sid`; `GET /v1/deferred/{sid}` tells its fate)."""
        decision = decisions[0]
        form = parse_form(incoming.body)
        account = incoming.params.get("account", "")
        stamp = format_datetime(decision.at)
        resource = {
            "sid": decision.decision_id,
            "account_sid": account,
            "to": form.get("To", [None])[0],
            "from": form.get("From", [None])[0],
            "messaging_service_sid": form.get("MessagingServiceSid", [None])[0],
            "body": form.get("Body", [""])[0],
            "status": "scheduled",
            "num_segments": _segments(decision),
            "num_media": str(len(form.get("MediaUrl", []))),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": stamp,
            "date_updated": stamp,
            "date_sent": None,
            "price": None,
            "price_unit": None,
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{decision.decision_id}.json",
            "gateway_decision_id": decision.decision_id,
            "gateway_deliver_at": iso(decision.deliver_at),
        }
        return json_answer(201, resource)

    def refused(self, items: Sequence[Item], decisions: Sequence[Decision], capped: bool) -> Answer:
        decision = decisions[0]
        if capped:
            code, status = TOO_MANY, 429
        else:
            code, status = (OPTED_OUT if opted_out(decision) else FILTERED), 400
        details = {
            "decision_id": decision.decision_id,
            "reasons": [r.to_json() for r in decision.reasons],
        }
        return _error(status, code, f"{_LEADS[code]}: {explain(decision)}", details)

    def error(self, status: int, message: str) -> Answer:
        return _error(status, 20000 + status, message)

    def bad_input(self, error: InputError, decision: Decision | None = None) -> Answer:
        code = error.code if isinstance(error, TwilioInputError) else 20000 + error.status
        if decision is None:
            return _error(error.status, code, str(error))
        details = {
            "decision_id": decision.decision_id,
            "reasons": [r.to_json() for r in decision.reasons],
        }
        message = f"{error} Refused by the compliance gateway, decision {decision.decision_id}."
        return _error(error.status, code, message, details)


def _error(status: int, code: int, message: str, details: object = None) -> Answer:
    data: dict[str, object] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    if details is not None:
        data["details"] = details
    return json_answer(status, data)


def _segments(decision: Decision) -> str:
    for result in decision.trace:
        if result.type == "content_length" and "segments" in result.detail:
            return str(result.detail["segments"])
    return "1"


ADAPTER = TwilioAdapter()
