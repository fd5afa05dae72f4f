"""consent rules through the whole gateway, on the embedded store and on
Redis: the opt-in lists' endpoints, and a refused message never counted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.redis_support import REDIS_URL, delete_prefix, new_prefix, require_redis_sync
from tests.web.conftest import Make, sms

RULES = """
rules:
  - id: express-consent
    type: consent
    match: {category: marketing}
    lists: ["consent:{sender}"]
  - id: two-a-day
    type: frequency_cap
    limits: [{count: 2, per: 24h}]
"""
TO = "+12125550100"


@pytest.fixture(params=["embedded", "redis"])
def consented(request: pytest.FixtureRequest, make_client: Make) -> Iterator[TestClient]:
    if request.param == "embedded":
        yield make_client(RULES)
        return
    require_redis_sync()
    prefix = new_prefix()
    try:
        yield make_client(RULES, env={"GATEWAY_STORE": REDIS_URL, "GATEWAY_REDIS_PREFIX": prefix})
    finally:
        delete_prefix(REDIS_URL, prefix)


def test_no_consent_is_refused_and_not_counted(consented: TestClient) -> None:
    client = consented
    for _ in range(3):  # more than the cap: none of them may count
        refused = client.post("/v1/messages", json=sms(to=TO))
        assert refused.status_code == 403
        assert [r["code"] for r in refused.json()["reasons"]] == ["no_consent"]
    transactional = client.post("/v1/messages", json=sms(to=TO, category="transactional"))
    assert transactional.status_code == 201  # the rule does not apply; this one counts
    put = client.put(f"/v1/consents/consent:default/{TO}", json={"note": "web form, 2026-06-01"})
    assert put.status_code == 201
    assert client.get(f"/v1/opt-outs/consent:default/{TO}").json()["note"] == "web form, 2026-06-01"
    assert client.post("/v1/messages", json=sms(to=TO)).status_code == 201
    capped = client.post("/v1/messages", json=sms(to=TO))  # two counted sends: the cap
    assert [r["code"] for r in capped.json()["reasons"]] == ["frequency_capped"]
    assert client.delete(f"/v1/consents/consent:default/{TO}").status_code == 204
    assert client.get(f"/v1/consents/consent:default/{TO}").status_code == 404


def test_consent_lists_import_and_export(consented: TestClient) -> None:
    client = consented
    answer = client.post(
        "/v1/consents/consent:default/import", content=b"address,note\n+12125550100,signup\n"
    )
    assert answer.status_code == 200, answer.text
    assert client.post("/v1/messages", json=sms(to=TO)).status_code == 201
    exported = client.get("/v1/consents/consent:default/export").text
    assert "signup" in exported
