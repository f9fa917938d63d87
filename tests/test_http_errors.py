"""Bad requests over real HTTP: every error is a problem document, the server lives on.

One ``hookline serve tests/pipelines/runtime/http`` per module; ``requests``
as the client, ``http.client`` where the test needs to hold one connection.

    POST /rt/orders        validated order (POST, PUT)
    GET|POST /rt/echo/{item} echoes method, params, query, a header, body
    POST /rt/nobody        no respond section → 204
    POST /rt/header        copies body.name into the X-Name response header
"""
from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
import requests

from conftest import ROOT, start_hookline

PIPELINES = ROOT / "tests" / "pipelines" / "runtime" / "http"
PROBLEM = "application/problem+json"
TWO_MB = 2 * 1024 * 1024
GOOD_ORDER = {"id": 1, "line_items": [{"sku": "A-1", "quantity": 2}]}


@pytest.fixture(scope="module")
def server():
    proc = start_hookline([PIPELINES], tail=True)
    yield proc
    proc.stop()


def connect(server) -> http.client.HTTPConnection:
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def assert_problem(resp, status: int) -> dict:
    """``resp`` (requests or http.client) is a problem document with ``status``."""
    code = getattr(resp, "status_code", None) or resp.status
    headers = resp.headers
    raw = resp.content if hasattr(resp, "content") else resp.read()
    text = raw.decode("utf-8", "replace")
    assert code == status, text
    assert headers.get("Content-Type") == PROBLEM
    assert "Traceback" not in text and 'File "' not in text
    doc = json.loads(raw)
    assert {"type", "title", "status", "detail"} <= doc.keys(), doc
    assert doc["status"] == status and doc["type"].startswith("https://")
    return doc


def post_order(server, data, **kw):
    return requests.post(server.url + "/rt/orders", data=data, timeout=10,
                         headers={"Content-Type": "application/json"}, **kw)


# -- malformed input -----------------------------------------------------------------------

@pytest.mark.parametrize("data", [b'{"id": 1, "line_items": [', b"{", b'{"id": 1,}', b"\xff\xfe{}"])
def test_malformed_json_is_400(server, data):
    doc = assert_problem(post_order(server, data), 400)
    assert "JSON" in doc["title"] or "JSON" in doc["detail"]


def test_wrong_types_are_422_with_pointers(server):
    body = {"id": "seven", "line_items": [{"sku": "A", "quantity": "two"}, {"sku": 5, "quantity": 0}]}
    doc = assert_problem(post_order(server, json.dumps(body)), 422)
    pointers = {e["pointer"] for e in doc["errors"]}
    assert pointers == {"/body/id", "/body/line_items/0/quantity", "/body/line_items/1/sku",
                        "/body/line_items/1/quantity"}
    assert all(set(e) == {"pointer", "message"} and e["message"] for e in doc["errors"])


def test_missing_required_points_at_the_parent(server):
    doc = assert_problem(post_order(server, json.dumps({"line_items": [{"sku": "A"}]})), 422)
    pointers = {e["pointer"] for e in doc["errors"]}
    assert pointers == {"/body", "/body/line_items/0"}


# -- body size -------------------------------------------------------------------------------

def test_2mb_body_with_content_length_is_413_and_connection_is_kept(server):
    conn = connect(server)
    conn.request("POST", "/rt/orders", body=b"x" * TWO_MB,
                 headers={"Content-Type": "application/json", "Content-Length": str(TWO_MB)})
    resp = conn.getresponse()
    doc = assert_problem(resp, 413)
    assert doc["max_body_bytes"] == 1024 * 1024
    sock = conn.sock
    conn.request("POST", "/rt/orders", body=json.dumps(GOOD_ORDER), headers={"Content-Type": "application/json"})
    good = conn.getresponse()
    assert good.status == 200 and json.loads(good.read()) == {"order": 1, "lines": 1}
    assert conn.sock is sock, "the server closed the connection after the 413"
    conn.close()


def _chunks(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b"y" * size


def test_2mb_chunked_body_is_413_and_connection_is_kept(server):
    conn = connect(server)
    conn.request("POST", "/rt/orders", body=_chunks(TWO_MB), encode_chunked=True,
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert_problem(conn.getresponse(), 413)
    sock = conn.sock
    conn.request("POST", "/rt/orders", body=json.dumps(GOOD_ORDER), headers={"Content-Type": "application/json"})
    good = conn.getresponse()
    assert good.status == 200, good.read()
    good.read()
    assert conn.sock is sock, "the server closed the connection after the 413"
    conn.close()


def test_2mb_generator_body_via_requests_is_413(server):
    with requests.Session() as session:
        resp = session.post(server.url + "/rt/orders", data=_chunks(TWO_MB), timeout=10,
                            headers={"Content-Type": "application/json"})
        assert resp.request.headers.get("Transfer-Encoding") == "chunked"
        assert_problem(resp, 413)
        assert session.post(server.url + "/rt/orders", json=GOOD_ORDER, timeout=10).status_code == 200


def test_body_just_under_the_limit_is_read(server):
    padding = "z" * (1024 * 1024 - 200)
    body = json.dumps({**GOOD_ORDER, "padding": padding})
    assert len(body) <= 1024 * 1024
    assert post_order(server, body).status_code == 200


# -- routing errors --------------------------------------------------------------------------

def test_wrong_method_is_405_with_allow(server):
    resp = requests.delete(server.url + "/rt/orders", timeout=10)
    doc = assert_problem(resp, 405)
    allow = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert {"POST", "PUT"} <= allow <= {"POST", "PUT", "OPTIONS"}, allow
    assert "DELETE" in doc["detail"]


def test_unknown_path_is_404(server):
    doc = assert_problem(requests.post(server.url + "/rt/nope", json={}, timeout=10), 404)
    assert "/rt/nope" in doc["detail"]


def test_head_on_known_and_unknown_paths_gets_a_bodyless_answer(server):
    """HEAD is no DSL method, so 405/404 — with headers only, on a connection that stays usable."""
    for path, status in (("/rt/orders", 405), ("/rt/nope", 404)):
        conn = connect(server)
        conn.request("HEAD", path)
        try:
            resp = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError) as exc:
            pytest.fail(f"HEAD {path}: the server closed the connection without an answer ({exc!r})")
        assert resp.status == status and resp.read() == b""
        conn.request("POST", "/rt/orders", body=json.dumps(GOOD_ORDER))
        assert conn.getresponse().status == 200
        conn.close()


def test_every_error_then_a_good_request(server):
    """All the failures above, back to back on one session; the server still answers 200
    and logs no traceback for any of them (they are the client's mistakes, not ours)."""
    logged = len(server.log.lines)
    with requests.Session() as s:
        u = server.url
        cases = [
            (s.post(u + "/rt/orders", data=b'{"id": 1, "line_', timeout=10), 400),
            (s.post(u + "/rt/orders", json={"id": [], "line_items": {}}, timeout=10), 422),
            (s.post(u + "/rt/orders", data=b"{" * TWO_MB, timeout=10), 413),
            (s.post(u + "/rt/orders", data=_chunks(TWO_MB), timeout=10), 413),
            (s.patch(u + "/rt/orders", json=GOOD_ORDER, timeout=10), 405),
            (s.get(u + "/definitely/not/here", timeout=10), 404),
            (s.get(u + "/", timeout=10), 404),
            (s.post(u + "/rt/echo/x", data=b"\xc3\x28", timeout=10), 400),
        ]
        for resp, status in cases:
            assert_problem(resp, status)
        good = s.post(u + "/rt/orders", json=GOOD_ORDER, timeout=10)
        assert good.status_code == 200 and good.json() == {"order": 1, "lines": 1}
    time.sleep(0.1)                       # let the drain thread catch up
    assert "Traceback" not in "".join(server.log.lines[logged:])


# -- what expressions see ----------------------------------------------------------------------

def test_path_param_is_percent_decoded(server):
    resp = requests.get(server.url + "/rt/echo/a%2Fb%20%C3%A9%E2%82%AC%3F", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["params"] == {"item": "a/b é€?"}
    assert resp.json()["path"] == "/rt/echo/a%2Fb%20%C3%A9%E2%82%AC%3F"


def test_repeated_query_key_is_a_list(server):
    resp = requests.get(server.url + "/rt/echo/q?tag=a&tag=b&one=1&empty=&sp=a%20b", timeout=10)
    assert resp.json()["query"] == {"tag": ["a", "b"], "one": "1", "empty": "", "sp": "a b"}


def test_headers_reach_expressions_lower_cased(server):
    resp = requests.get(server.url + "/rt/echo/h", headers={"X-Trace-ID": "T-42"}, timeout=10)
    got = resp.json()
    assert got["trace"] == "T-42" and got["has_mixed_case"] is False
    assert got["method"] == "GET" and got["body"] is None


def test_no_respond_is_204_without_content_length(server):
    """RFC 9110 §8.6: a server MUST NOT send Content-Length in a 204 response."""
    conn = connect(server)
    conn.request("POST", "/rt/nobody", body=b"{}", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 204 and resp.read() == b""
    assert resp.getheader("Content-Length") is None, "204 carries Content-Length"
    conn.close()


# -- request data that the response cannot carry ------------------------------------------------

def test_deeply_nested_body_is_not_a_500(server):
    """orjson reads up to 1024 levels but writes only 255: echoing 300 levels must not be a 500."""
    body = b"[" * 300 + b"]" * 300
    resp = requests.post(server.url + "/rt/echo/deep", data=body, timeout=10)
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_problem(resp, resp.status_code)


@pytest.mark.parametrize("name", ["Zoë", "Preis in €", " padded", "trailing\n", "nul\x00byte"])
def test_response_header_from_request_data_is_not_a_500(server, name):
    resp = requests.post(server.url + "/rt/header", json={"name": name}, timeout=10)
    assert resp.status_code < 500, f"{name!r}: {resp.text}"
    if resp.status_code == 200:
        assert resp.json() == {"name": name}


@pytest.mark.parametrize("levels, status", [(128, 200), (129, 400), (600, 400)])
def test_body_nesting_is_bounded_at_128_levels(server, levels, status):
    """Deeper than 128 levels of arrays/objects is a 400 too-deep problem; 128 is fine."""
    body = b"[" * levels + b"]" * levels
    resp = requests.post(server.url + "/rt/echo/deep", data=body, timeout=10,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    if status == 400:
        assert_problem(resp, 400)
        assert resp.json()["type"].endswith("/too-deep")


def test_integers_beyond_64_bits_are_kept_exact(server):
    """orjson alone would read 2**70 as a float; the engine keeps the integer exact."""
    big = 2 ** 70 + 1
    resp = requests.post(server.url + "/rt/echo/deep", data=f'{{"n": {big}, "s": "x"}}'.encode(),
                         timeout=10, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["body"] == {"n": big, "s": "x"}       # json keeps big ints exact
    assert f'"n":{big}' in resp.text


def test_an_integer_of_more_than_64_digits_is_400(server):
    resp = requests.post(server.url + "/rt/echo/deep", data=b'{"n": ' + b"7" * 65 + b"}",
                         timeout=10, headers={"Content-Type": "application/json"})
    assert_problem(resp, 400)
    assert resp.json()["type"].endswith("/number-too-large")
    ok = requests.post(server.url + "/rt/echo/deep", data=b'{"n": ' + b"7" * 64 + b"}",
                       timeout=10, headers={"Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json()["body"]["n"] == int("7" * 64)
