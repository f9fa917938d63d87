"""receive.rate_limit is shared across processes when the store is Redis: two servers on one
Redis draw from one bucket (each alone would let its own burst through)."""
from __future__ import annotations

import os
import socket
import uuid

import pytest
import requests

from urllib.parse import urlsplit

from conftest import ROOT, read_answer, start_hookline

PIPELINES = ROOT / "tests" / "pipelines" / "ratelimit"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def redis_url():
    if not _redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not answering on 127.0.0.1:6379 (CI=true: it must)")
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    prefix = f"test-rl-{uuid.uuid4().hex[:8]}:"
    yield f"redis://127.0.0.1:6379/0?prefix={prefix}"
    import redis
    client = redis.Redis()
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


def test_two_processes_on_one_redis_share_one_bucket(redis_url):
    one = start_hookline([PIPELINES], extra=("--store", redis_url))
    two = start_hookline([PIPELINES], extra=("--store", redis_url))
    try:
        answers = [requests.get(server.url + "/rl/shared", timeout=10)
                   for server in (one, two, one, two, one, two)]
    finally:
        one.stop()
        two.stop()
    codes = [r.status_code for r in answers]
    assert codes[:3] == [200, 200, 200], codes           # the burst of 3, spread over both
    assert codes[3:] == [429, 429, 429], codes           # 0.2/s: no token comes back this soon
    refused = answers[3]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"].endswith("/rate-limited")


def test_without_redis_each_process_has_its_own_bucket(tmp_path):
    store = f"sqlite:{tmp_path}/h.db"
    one = start_hookline([PIPELINES], extra=("--store", store))
    two = start_hookline([PIPELINES], extra=("--store", store))
    try:
        codes = [requests.get(server.url + "/rl/shared", timeout=10).status_code
                 for server in (one, two) * 3]
    finally:
        one.stop()
        two.stop()
    assert codes == [200] * 6                            # 3 per process: per-process buckets


def test_the_shared_429_comes_before_the_body_and_instead_of_100_continue(redis_url):
    # Decided by asking Redis, still before the body is read (docs/http.md, "Refusals before the body").
    server = start_hookline([PIPELINES], extra=("--store", redis_url))
    parts = urlsplit(server.url)
    try:
        assert [requests.get(server.url + "/rl/shared", timeout=10).status_code for _ in range(3)] == [200] * 3
        head = b"GET /rl/shared HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
            answer = read_answer(sock.makefile("rb"))
            answer.problem(429, "rate-limited")
            assert int(answer.headers["retry-after"]) >= 1 and answer.headers["connection"] == "close"
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head + b"\r\n" + b"x" * 100)        # 100 of the 1,000 bytes
            read_answer(sock.makefile("rb")).problem(429, "rate-limited")
    finally:
        server.stop()
