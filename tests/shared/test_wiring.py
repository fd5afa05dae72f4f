"""Shared mode through `gateway serve`: the store settings reach redis-py, the
pseudonymization key is one for every process (and guarded against a Redis
that lost it), and `--workers N` runs N processes on one set of limits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx2 as httpx
import pytest
import redis
from redis.asyncio.connection import SSLConnection

from gateway.errors import ConfigError
from gateway.runtime import open_store
from gateway.settings import load_settings
from gateway.store.redis import RedisStore
from tests.conftest import REPO
from tests.redis_support import free_port
from tests.server import Server
from tests.stub_upstream import StubUpstream

from .conftest import BOUND, Launch, Shared, post, rules, sms
from .test_concurrency import fire

KEY = "secret:{pseudonymization-key}"


async def test_store_settings_reach_redis_py(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("not checked before connecting\n")
    settings = load_settings(
        None,
        {
            "GATEWAY_REDIS_URL": f"rediss://127.0.0.1:{free_port()}/2",
            "GATEWAY_REDIS_PREFIX": "acme:",
            "GATEWAY_REDIS_TIMEOUT": "0.25",
            "GATEWAY_REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem"),
            "GATEWAY_REDIS_TLS_CERT_FILE": str(tmp_path / "client.pem"),
            "GATEWAY_REDIS_TLS_KEY_FILE": str(tmp_path / "client.key"),
        },
    )
    store = await open_store(settings)  # nothing listens there: opening must not fail
    assert isinstance(store, RedisStore) and store.prefix == "acme:"
    pool = store._redis.connection_pool
    kwargs = pool.connection_kwargs
    assert pool.connection_class is SSLConnection
    assert kwargs["db"] == 2
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.25)
    assert kwargs["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    assert kwargs["ssl_certfile"] == str(tmp_path / "client.pem")
    assert kwargs["ssl_keyfile"] == str(tmp_path / "client.key")
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("required", True)
    pool.connection_class(**kwargs)  # redis-py takes every option as given
    await store.close()


async def test_tls_verification_can_be_turned_off_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("store: rediss://127.0.0.1:1/0\nredis_tls: {verify: false}\n")
    store = await open_store(load_settings(config, {}))
    assert isinstance(store, RedisStore)
    kwargs = store._redis.connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == ("none", False)
    assert "ssl_ca_certs" not in kwargs
    await store.close()


def test_tls_options_need_a_rediss_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"redis_tls: .*TLS options need a rediss:// store URL"):
        load_settings(None, {"GATEWAY_REDIS_URL": "redis://x/0", "GATEWAY_REDIS_TLS_VERIFY": "0"})
    with pytest.raises(ConfigError, match=r"redis_tls\.ca_file"):
        load_settings(
            None,
            {"GATEWAY_REDIS_URL": "rediss://x/0", "GATEWAY_REDIS_TLS_CA_FILE": "/no/such.pem"},
        )


def test_workers_are_refused_in_embedded_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        # A free port: 8080 may be a gateway's already (make run), refused first.
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--workers",
            "2",
            "--port",
            str(free_port()),
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "gateway: --workers needs shared mode (GATEWAY_REDIS_URL): one process owns a data folder"
    ]


def test_two_processes_hash_a_recipient_alike(launch: Launch, shared: Shared) -> None:
    first, second = launch(shared, opt_out=True), launch(shared, opt_out=True)
    tokens = {post(gw, sms(), "/v1/check").json()["recipient"] for gw in (first, second)}
    assert len(tokens) == 1 and tokens.pop().startswith("hmac:")

    assert httpx.put(first.url + "/v1/opt-outs/global/+12125550100", timeout=BOUND).is_success
    refused = post(second, sms())
    assert refused.status_code == 403
    assert [r["code"] for r in refused.json()["reasons"]] == ["opted_out"]


def test_a_store_that_lost_the_key_is_refused_until_a_running_process_restores_it(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    running = launch(shared)
    token = post(running, sms(), "/v1/check").json()["recipient"]
    assert (tmp_path / "data" / "pseudonymization-key.fingerprint").is_file()
    client = redis.Redis.from_url(shared.url)
    try:
        client.delete(shared.prefix + KEY)  # as a Redis restarted without its data

        refused = launch(shared, wait=False)
        assert refused.process.wait(BOUND) == 2
        lines = refused.output().strip().splitlines()
        assert lines[-1].startswith("gateway: the shared store holds no pseudonymization key")
        assert client.exists(shared.prefix + KEY) == 0  # it made no key of its own

        assert httpx.get(running.url + "/readyz", timeout=BOUND).status_code == 200
        assert client.exists(shared.prefix + KEY) == 1  # the running process put its key back
    finally:
        client.close()
    restarted = launch(shared)
    assert post(restarted, sms(), "/v1/check").json()["recipient"] == token


def test_serve_with_workers_runs_processes_on_one_set_of_limits(
    launch: Launch, shared: Shared, tmp_path: Path, stub: StubUpstream
) -> None:
    server: Server = launch(shared, "--workers", "2", cap=3)
    answers = asyncio.run(fire([server], [sms()] * 40))
    assert Counter(a.status_code for a in answers) == {201: 3, 429: 37}
    assert len(stub.received) == 3
    # Each worker keeps its trail in a folder of its own; the supervisor claims none.
    deadline = time.monotonic() + BOUND
    while len(trails := sorted((tmp_path / "data").glob("worker-*/audit.db"))) < 2:
        assert time.monotonic() < deadline, f"worker trails: {trails}"
        time.sleep(0.05)
    assert [p.parent.name for p in trails] == ["worker-1", "worker-2"]


def test_every_worker_answers_for_every_workers_decisions(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    """An auditor asks one worker, whichever takes the connection, and pages
    through all the machine's decisions: none missing, none twice."""
    server: Server = launch(shared, "--workers", "2", cap=100)
    sent = [httpx.post(server.url + "/v1/messages", json=sms(), timeout=BOUND) for _ in range(30)]
    ids = {answer.headers["x-gateway-decision-id"] for answer in sent}
    trails = sorted(p.parent.name for p in (tmp_path / "data").glob("worker-*/audit.db"))
    assert trails == ["worker-1", "worker-2"]  # both took some
    deadline = time.monotonic() + BOUND
    while True:  # another worker's decisions are read once its indexer has them
        pages, cursor = [], None
        while True:
            params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
            page = httpx.get(server.url + "/v1/decisions", params=params, timeout=BOUND).json()
            pages.append([d["decision_id"] for d in page["decisions"]])
            if (cursor := page["next_cursor"]) is None:
                break
        listed = [i for page in pages for i in page]
        if sorted(listed) == sorted(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(listed) == sorted(ids)
    assert listed == sorted(listed, reverse=True)  # newest first across the trails
    for decision_id in ids:
        answer = httpx.get(f"{server.url}/v1/decisions/{decision_id}", timeout=BOUND)
        assert answer.status_code == 200
    export = httpx.get(server.url + "/v1/decisions/export", timeout=BOUND).text.splitlines()
    assert len(export) == len(ids)
    # Pages of one: most trails show nothing on a page, and start from their top.
    pages, cursor = [], None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = httpx.get(server.url + "/v1/decisions", params=params, timeout=BOUND)
        assert page.status_code == 200, page.text
        pages += [d["decision_id"] for d in page.json()["decisions"]]
        if (cursor := page.json()["next_cursor"]) is None:
            break
    assert pages == listed
    # A trail that is not there (a worker gone) is only left out.
    gone = httpx.get(server.url + "/v1/decisions", params={"cursor": "9:5"}, timeout=BOUND)
    assert gone.status_code == 200
    for bad in ("7", "1:2,x", "1:" + "9" * 30):
        answer = httpx.get(server.url + "/v1/decisions", params={"cursor": bad}, timeout=BOUND)
        assert answer.status_code == 400, bad


def test_a_reload_asked_of_one_worker_reaches_every_worker(
    launch: Launch, shared: Shared, tmp_path: Path
) -> None:
    server: Server = launch(shared, "--workers", "2", cap=3)
    before = httpx.get(server.url + "/v1/policies", timeout=BOUND).json()["version"]
    (tmp_path / "policies-0" / "rules.yaml").write_text(rules(7), encoding="utf-8")
    after = httpx.post(server.url + "/v1/policies/reload", timeout=BOUND).json()["version"]
    assert after != before
    # Each request on a new connection, which either worker may take: within
    # a few seconds, every answer names the new bundle, 40 times in a row.
    deadline, in_a_row = time.monotonic() + BOUND, 0
    while in_a_row < 40:
        assert time.monotonic() < deadline, "a worker still serves the previous bundle"
        seen = httpx.get(server.url + "/v1/policies", timeout=BOUND).json()["version"]
        in_a_row = in_a_row + 1 if seen == after else 0
        time.sleep(0.02)
