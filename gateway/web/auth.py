"""Bearer API keys with roles (stored as SHA-256 hashes). Pure ASGI middleware."""

from __future__ import annotations

import hashlib
import hmac

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import Forbidden
from gateway.settings import ApiKey
from gateway.web.http import json_response

# Which role may call what: (method, path prefix) -> roles. Admin may do everything.
_RULES: list[tuple[str, str, frozenset[str]]] = [
    ("*", "/healthz", frozenset({"*"})),
    ("*", "/readyz", frozenset({"*"})),
    ("GET", "/metrics", frozenset({"*"})),
    # Twilio calls it with no key of ours: its signature is checked instead.
    ("POST", "/v1/inbound/", frozenset({"*"})),
    ("POST", "/v1/unsubscribe/links", frozenset({"sender"})),
    # Mail clients send one-click unsubscribes with no credentials (RFC 8058):
    # the link's signed token is checked instead.
    ("*", "/v1/unsubscribe", frozenset({"*"})),
    ("POST", "/v1/messages", frozenset({"sender"})),
    ("POST", "/v1/check", frozenset({"sender"})),
    ("GET", "/v1/deferred", frozenset({"sender"})),
    ("DELETE", "/v1/deferred", frozenset({"sender"})),
    ("GET", "/v1/decisions", frozenset({"auditor"})),
    ("GET", "/v1/audit/", frozenset({"auditor"})),
    ("GET", "/v1/policies", frozenset({"auditor"})),
    ("GET", "/v1/sandbox", frozenset({"sender"})),
    ("POST", "/2010-04-01/", frozenset({"sender"})),
    ("POST", "/v3/mail/send", frozenset({"sender"})),
    ("POST", "/v1/projects/", frozenset({"sender"})),
]
# Drop-in requests carry the provider's credentials in Authorization, so the
# gateway's key comes in its own header there.
DROP_IN = ("/2010-04-01/", "/v3/mail/send", "/v1/projects/")


def allowed(role: str, method: str, path: str) -> bool:
    if role == "admin":
        return True
    for rule_method, prefix, roles in _RULES:
        if rule_method in ("*", method) and path.startswith(prefix):
            return "*" in roles or role in roles
    return False


class ApiKeys:
    """The configured keys, and what each request may call with the key it carries."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def refusal(self, scope: Scope) -> Response | None:
        """The 401 or 403 answer for an HTTP request its key does not allow;
        None to let it through. With no keys configured, every request goes
        through but a browser's from another origin that would change something."""
        if not self.keys:
            return _cross_site(scope)
        path, method = scope["path"], scope["method"]
        if allowed("", method, path):  # open to anyone (health checks)
            return None
        if path.startswith(DROP_IN):
            given = _header(scope, b"x-gateway-key")
            key = self._key(b"Bearer " + given)
        else:
            given = _header(scope, b"authorization")
            key = self._key(given)
        if key is None:
            where = "X-Gateway-Key" if path.startswith(DROP_IN) else "Authorization: Bearer ..."
            if given:  # one was given: say so, rather than that none was
                return _refused(
                    path, 401, f"the API key given ({where}) is not a key of this gateway"
                )
            return _refused(path, 401, f"an API key is needed ({where})")
        if not allowed(key.role, method, path):
            return _refused(path, 403, f"the {key.role} role may not {method} {path}")
        if key.senders:
            if path.startswith(_EVERY_SENDERS):
                why = f"a key bound to senders may not {method} {path}: it holds every sender's"
                return _refused(path, 403, why)
            scope.setdefault("state", {})[_BOUND] = tuple(key.senders)
        return None

    def _key(self, header: bytes) -> ApiKey | None:
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256):
                return key
        return None


# Where the request's bound senders are kept (starlette's request.state reads scope["state"]).
_BOUND = "gateway_senders"
# What shows every sender's messages at once, and so no key bound to some of them.
_EVERY_SENDERS = ("/v1/sandbox",)


def bound_senders(scope: Scope) -> tuple[str, ...]:
    """The senders the request's key may act for; () for any (an unbound key,
    or no keys configured)."""
    senders: tuple[str, ...] = scope.get("state", {}).get(_BOUND, ())
    return senders


def may_act(scope: Scope, sender: str) -> None:
    """Forbidden unless the request's key may act for `sender`."""
    bound = bound_senders(scope)
    if bound and sender not in bound:
        raise Forbidden(f"this key acts for {', '.join(bound)} only, not for sender '{sender}'")


class ApiKeyAuth:
    """With keys configured, every request but health needs `Authorization: Bearer`."""

    def __init__(self, app: ASGIApp, keys: list[ApiKey]) -> None:
        self.app = app
        self.keys = ApiKeys(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.keys.refusal(scope) if scope["type"] == "http" else None
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


_MESSAGE_PATHS = frozenset({"/v1/messages", "/v1/check"})
# A drop-in sender's client reads errors in its provider's shape only.
_PROVIDER_OF = {"/2010-04-01/": "twilio", "/v3/mail/send": "sendgrid", "/v1/projects/": "fcm"}


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cross_site(scope: Scope) -> Response | None:
    """With no API keys, a 403 for a browser's request from another origin
    that would change something: a web page may post a form, text or a body
    of no declared type to a gateway on loopback without the browser asking
    first, and with no key to hold it back the page could send messages or
    opt recipients in and out. Only browsers send Origin; other clients go on."""
    if scope["method"] in _SAFE_METHODS:
        return None
    origin = host = b""
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = value
        elif name == b"host":
            host = value
    if not origin:
        return None
    _, _, netloc = origin.partition(b"://")
    if netloc and netloc.lower() == host.lower():
        return None  # the gateway's own page (the unsubscribe form)
    shown = origin.decode("latin-1")[:100]
    return _refused(
        scope["path"],
        403,
        f"a web page ({shown}) may not call a gateway that has no API keys: configure api_keys",
    )


def _refused(path: str, status: int, message: str) -> Response:
    """The 401 or 403 answer: in the provider's shape on its drop-in paths."""
    found = (name for prefix, name in _PROVIDER_OF.items() if path.startswith(prefix))
    provider = next(found, None)
    if provider is None:
        headers = {}
        if status == 401:  # RFC 9110: a 401 names the scheme that would be accepted
            headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
        if path in _MESSAGE_PATHS:  # every answer about a message says its fate
            headers["X-Gateway-Decision"] = "reject"
        return json_response({"error": message}, status, headers)
    from gateway.relay import ADAPTERS
    from gateway.web.dropin import REJECT, respond

    return respond(ADAPTERS[provider].error(status, message).with_headers([REJECT]))


def _header(scope: Scope, name: bytes) -> bytes:
    """The last value of header `name` (as a dict of the headers would hold it), or b""."""
    found = b""
    for key, value in scope["headers"]:
        if key == name:
            found = value
    return found
