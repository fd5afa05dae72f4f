"""API keys with roles: 401 without a key, 403 for the wrong role."""

from __future__ import annotations

import hashlib
import json

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import Make, sms


def keys(**roles: str) -> str:
    """The api_keys setting for keys named by their role."""
    return json.dumps(
        [
            {"sha256": hashlib.sha256(key.encode()).hexdigest(), "role": role}
            for key, role in roles.items()
        ]
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make(make_client: Make) -> TestClient:
    return make_client(
        env={"GATEWAY_API_KEYS": keys(s3cret="sender", aud1t="auditor", r00t="admin")}
    )


def test_no_key_is_401(make_client: Make) -> None:
    client = make(make_client)
    answer = client.post("/v1/messages", json=sms())
    assert answer.status_code == 401
    assert answer.json() == {"error": "an API key is needed (Authorization: Bearer ...)"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert answer.headers["X-Gateway-Decision"] == "reject"  # nothing was sent
    assert client.post("/v1/messages", json=sms(), headers=bearer("wrong")).status_code == 401
    assert client.get("/healthz").status_code == 200  # health stays open


def test_roles(make_client: Make) -> None:
    client = make(make_client)
    sent = client.post("/v1/messages", json=sms(), headers=bearer("s3cret"))
    assert sent.status_code == 201
    assert client.get("/v1/decisions", headers=bearer("s3cret")).status_code == 403
    assert client.get("/v1/decisions", headers=bearer("aud1t")).status_code == 200
    refused = client.put("/v1/opt-outs/global/+12125550100", headers=bearer("aud1t"))
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "the auditor role may not PUT /v1/opt-outs/global/+12125550100"
    }
    assert client.put("/v1/opt-outs/global/+12125550100", headers=bearer("r00t")).status_code == 201
    opted_out = client.post("/v1/messages", json=sms(), headers=bearer("r00t"))
    assert opted_out.json()["reasons"][0]["code"] == "opted_out"


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/export", "/v1/audit/verify"])
def test_the_trail_is_for_auditors(make_client: Make, path: str) -> None:
    client = make(make_client)
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer("s3cret")).status_code == 403
    assert client.get(path, headers=bearer("aud1t")).status_code == 200
