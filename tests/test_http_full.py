"""Full-stack HTTP (issue 3) over a real ``hookline serve``: every method, HEAD, OPTIONS and
CORS; query and header values; every request and response format with RFC 9110 negotiation;
compression both ways; and the bodies that must not hurt (a gzip bomb, XML entities, bad
charsets). Then the example pipelines of issue 3 and every ``curl`` line of docs/http.md.

One ``hookline serve tests/pipelines/http_full`` per module; ``requests`` as the client,
``http.client`` where a header must repeat or a connection must be reused, the real ``curl``
where curl is the point. The pipelines:

    GET              /hf/items/{id}  items-read    {id, name, query}; X-Item-Id, Cache-Control
    PUT|PATCH|DELETE /hf/items/{id}  items-write   {method, id, body}
    POST             /hf/items       items-create  201 {method, body}; Location
    GET|POST         /hf/cors        cors          two allowed origins, X-Request-Id allowed
    GET              /hf/public      cors-any      origins ["*"]
    GET              /hf/query       query-raw     request.query as it comes
    GET              /hf/search      query-typed   validate.query with integer/number/boolean/arrays
    GET              /hf/headers     headers       validate.headers; x-tag, x-count, x-flag, x-ids
    POST|PUT         /hf/echo        echo          request.body, formats [json, xml, text, csv]
    POST             /hf/xml         xml-only      content_types [application/xml, text/xml]
    POST             /hf/raw         raw-any       content_types ["*/*"]
    POST             /hf/pdf         raw-pdf       content_types [application/pdf]
    GET              /hf/report      report        a flat table, formats [csv, json]
    GET              /hf/forced      forced        respond.content_type application/vnd.hookline.v1+json
    GET              /hf/forced-problem forced-problem  respond.content_type application/problem+json
    POST             /hf/upload      upload        text/plain up to 16 MiB decoded
"""
from __future__ import annotations

import base64
import csv
import gzip
import http.client
import io
import json
import re
import shutil
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from conftest import CORPUS, ROOT, start_hookline
from engine.formats import parse_body

PIPELINES = ROOT / "tests" / "pipelines" / "http_full"
PROBLEM = "application/problem+json"
ROWS = [{"sku": "A-1", "qty": 2, "ok": True}, {"sku": "B-2", "qty": 5, "ok": False}]
MiB = 1 << 20
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def server():
    proc = start_hookline([PIPELINES], tail=True)
    yield proc
    proc.stop()


def media(resp) -> str:
    return resp.headers.get("Content-Type", "").partition(";")[0].strip()


def vary(resp) -> set[str]:
    """The Vary tokens, lower-case (requests joins repeated Vary lines with commas)."""
    return {v.strip().lower() for v in resp.headers.get("Vary", "").split(",") if v.strip()}


def assert_problem(resp, status: int, slug: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == PROBLEM
    doc = resp.json()
    assert doc["status"] == status and doc["type"] == f"https://hookline.dev/problems/{slug}", doc
    return doc


def echo(server, data, content_type="application/json", **headers):
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(f"{server.url}/hf/echo", data=data, headers=headers, timeout=10)


def connect(server) -> http.client.HTTPConnection:
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def assert_alive(server):
    resp = requests.get(f"{server.url}/hf/items/alive", timeout=5)
    assert resp.status_code == 200 and resp.json()["id"] == "alive"


# --- methods, HEAD, OPTIONS ----------------------------------------------------------------

def test_get_reaches_the_get_pipeline(server):
    resp = requests.get(f"{server.url}/hf/items/7?color=red", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"id": "7", "name": "widget", "query": {"color": "red"}}
    assert resp.headers["X-Item-Id"] == "7"


def test_post_reaches_its_pipeline_with_201_and_location(server):
    resp = requests.post(f"{server.url}/hf/items", json={"id": 42, "name": "lamp"}, timeout=10)
    assert resp.status_code == 201
    assert resp.headers["Location"] == "/hf/items/42"
    assert resp.json() == {"method": "POST", "body": {"id": 42, "name": "lamp"}}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_write_methods_share_the_path_with_get(server, method):
    resp = requests.request(method, f"{server.url}/hf/items/7", json={"name": "lamp"}, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"method": method, "id": "7", "body": {"name": "lamp"}}


def test_delete_without_a_body(server):
    resp = requests.delete(f"{server.url}/hf/items/7", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"method": "DELETE", "id": "7", "body": None}


def test_a_method_the_path_lacks_is_405_with_allow(server):
    resp = requests.post(f"{server.url}/hf/items/7", json={}, timeout=10)
    assert_problem(resp, 405, "method-not-allowed")
    assert resp.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"


@pytest.mark.parametrize("coding", ["identity", "gzip"])
def test_head_sends_the_get_headers_without_a_body(server, coding):
    """Same status and headers as GET — Content-Length and Content-Encoding included — no body."""
    url = f"{server.url}/hf/items/9?pad={'p' * 1500}"       # ≥ 1024 bytes: compressed for gzip
    got = requests.get(url, headers={"Accept-Encoding": coding}, stream=True, timeout=10)
    wire = got.raw.read(decode_content=False)
    head = requests.head(url, headers={"Accept-Encoding": coding}, timeout=10)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    drop = {"date"}
    assert {k.lower(): v for k, v in head.headers.items() if k.lower() not in drop} == \
           {k.lower(): v for k, v in got.headers.items() if k.lower() not in drop}
    assert int(head.headers["Content-Length"]) == len(wire)
    assert head.headers.get("Content-Encoding") == (None if coding == "identity" else "gzip")


def test_head_leaves_the_connection_usable(server):
    """Had HEAD sent a body, the next response on the connection would be garbage."""
    conn = connect(server)
    try:
        conn.request("HEAD", "/hf/items/1")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b"" and int(head.getheader("Content-Length")) > 0
        conn.request("GET", "/hf/items/2")
        got = conn.getresponse()
        assert got.status == 200 and json.loads(got.read())["id"] == "2"
    finally:
        conn.close()


def test_head_where_there_is_no_get_is_405(server):
    resp = requests.head(f"{server.url}/hf/echo", timeout=10)
    assert resp.status_code == 405 and resp.content == b""
    assert resp.headers["Allow"] == "OPTIONS, POST, PUT"


@pytest.mark.parametrize("path, allow", [("/hf/items/7", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
                                         ("/hf/items", "OPTIONS, POST"),
                                         ("/hf/echo", "OPTIONS, POST, PUT"),
                                         ("/hf/report", "GET, HEAD, OPTIONS")])
def test_options_answers_204_with_allow(server, path, allow):
    resp = requests.options(server.url + path, timeout=10)
    assert resp.status_code == 204 and resp.content == b""
    assert resp.headers["Allow"] == allow
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_options_on_an_unknown_path_is_404(server):
    assert_problem(requests.options(f"{server.url}/hf/nothing-here", timeout=10), 404, "not-found")


# --- CORS -------------------------------------------------------------------------------------

def preflight(server, path, origin, method, request_headers=None):
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if request_headers:
        headers["Access-Control-Request-Headers"] = request_headers
    return requests.options(server.url + path, headers=headers, timeout=10)


def test_preflight_from_an_allowed_origin(server):
    resp = preflight(server, "/hf/cors", "https://shop.example", "POST", "content-type, x-request-id")
    assert resp.status_code == 204 and resp.content == b""
    assert resp.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type, X-Request-Id"
    assert resp.headers["Access-Control-Max-Age"] == "120"
    assert "origin" in vary(resp)


@pytest.mark.parametrize("origin, method", [("https://evil.example", "POST"),       # origin not listed
                                            ("https://shop.example.evil", "GET"),   # no prefix match
                                            ("null", "GET"),                         # sandboxed iframe
                                            ("https://shop.example", "DELETE")])    # no DELETE here
def test_preflight_refused_has_no_cors_headers(server, origin, method):
    resp = preflight(server, "/hf/cors", origin, method)
    assert resp.status_code == 204
    assert resp.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_actual_request_from_an_allowed_origin(server, method):
    resp = requests.request(method, f"{server.url}/hf/cors", json={} if method == "POST" else None,
                            headers={"Origin": "https://admin.example"}, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"ok": True, "method": method}
    assert resp.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert {"origin", "accept"} <= vary(resp)


def test_an_error_to_an_allowed_origin_is_readable_by_the_browser(server):
    resp = requests.post(f"{server.url}/hf/cors", data=b'{"id": ', headers={
        "Origin": "https://shop.example", "Content-Type": "application/json"}, timeout=10)
    assert_problem(resp, 400, "bad-json")
    assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_actual_request_from_another_origin_gets_no_allow_origin(server):
    resp = requests.get(f"{server.url}/hf/cors", headers={"Origin": "https://evil.example"}, timeout=10)
    assert resp.status_code == 200            # CORS is enforced by the browser, not the server
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_wildcard_origin(server):
    resp = requests.get(f"{server.url}/hf/public", headers={"Origin": "https://any.example"}, timeout=10)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    pre = preflight(server, "/hf/public", "https://any.example", "GET")
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET"
    assert pre.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert pre.headers["Access-Control-Max-Age"] == "600"


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
def test_cors_answer_varies_by_origin_even_when_it_does_not_allow_it(server, origin):
    """Fetch standard, "CORS protocol and HTTP caches": a resource whose
    Access-Control-Allow-Origin depends on the Origin must send ``Vary: Origin`` on every
    response, with or without an allowed Origin — otherwise a cache stores the answer without
    Access-Control-Allow-Origin and serves it to the allowed shop, whose browser then blocks it.
    (Fails today: engine/server.py ``_Exchange.send`` adds Vary: Origin only with the ACAO.)"""
    headers = {"Origin": origin} if origin else {}
    resp = requests.get(f"{server.url}/hf/cors", headers=headers, timeout=10)
    assert resp.status_code == 200
    assert "origin" in vary(resp), resp.headers


# --- query and header values ----------------------------------------------------------------------

def test_query_without_a_schema_is_strings_and_lists(server):
    resp = requests.get(f"{server.url}/hf/query?a=1&b=2&b=3&c=&d=x+y&e=caf%C3%A9&b=4", timeout=10)
    assert resp.json() == {"a": "1", "b": ["2", "3", "4"], "c": "", "d": "x y", "e": "café"}


def test_query_schema_coerces_text_to_its_types(server):
    resp = requests.get(f"{server.url}/hf/search?limit=10&ratio=0.25&exact=true&tag=a&tag=b&id=7&id=8&q=42",
                        timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"limit": 10, "ratio": 0.25, "exact": True, "tag": ["a", "b"], "id": [7, 8],
                           "q": "42"}           # q is a string in the schema: left as text


def test_a_single_value_becomes_a_list_where_the_schema_wants_an_array(server):
    resp = requests.get(f"{server.url}/hf/search?tag=solo&id=3&ratio=2&exact=false", timeout=10)
    assert resp.json() == {"tag": ["solo"], "id": [3], "ratio": 2, "exact": False}


@pytest.mark.parametrize("query, pointer", [("limit=ten", "/query/limit"), ("limit=0", "/query/limit"),
                                            ("limit=1.5", "/query/limit"), ("exact=yes", "/query/exact"),
                                            ("id=1&id=x", "/query/id/1"), ("limit=1&limit=2", "/query/limit"),
                                            ("other=1", "/query")])
def test_text_that_does_not_coerce_is_422(server, query, pointer):
    doc = assert_problem(requests.get(f"{server.url}/hf/search?{query}", timeout=10), 422, "validation")
    assert pointer in [e["pointer"] for e in doc["errors"]], doc


def get_with_headers(server, path, pairs) -> tuple[int, bytes]:
    """GET with ``pairs`` sent as separate header lines, in order (repeats allowed)."""
    conn = connect(server)
    try:
        conn.putrequest("GET", path)
        for name, value in pairs:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_repeated_headers_become_lists(server):
    status, body = get_with_headers(server, "/hf/headers", [("X-Tag", "a"), ("X-Count", "3"), ("x-tag", "b"),
                                                            ("X-Tag", "c")])
    assert status == 200
    assert json.loads(body) == {"tag": ["a", "b", "c"], "count": 3, "flag": None, "ids": None}


def test_header_schema_coerces_single_and_repeated_values(server):
    status, body = get_with_headers(server, "/hf/headers", [("X-Flag", "true"), ("X-Ids", "5"),
                                                            ("X-Tag", "only")])
    assert status == 200 and json.loads(body) == {"tag": "only", "count": None, "flag": True, "ids": [5]}
    status, body = get_with_headers(server, "/hf/headers", [("X-Ids", "1"), ("X-Ids", "2")])
    assert status == 200 and json.loads(body)["ids"] == [1, 2]


def test_a_comma_joined_header_is_one_value(server):
    """Hookline does not split header values on commas (a Date or User-Agent has commas too):
    ``X-Ids: 1, 2`` is the one text "1, 2", which is no integer. Send the header twice instead."""
    status, body = get_with_headers(server, "/hf/headers", [("X-Ids", "1, 2")])
    assert status == 422 and json.loads(body)["errors"][0]["pointer"] == "/headers/x-ids/0"


# --- request bodies ---------------------------------------------------------------------------------

UTF16 = '{"name": "José"}'.encode("utf-16")          # with its BOM
REQUEST_FORMATS = [
    ("application/json", b'{"id": 1, "tags": ["a"]}', {"id": 1, "tags": ["a"]}),
    (None, b'{"id": 2}', {"id": 2}),
    ("application/vnd.api+json", b'{"data": {"type": "orders", "id": "3"}}', {"data": {"type": "orders", "id": "3"}}),
    ("application/json; charset=utf-16", UTF16, {"name": "José"}),
    ("application/xml", b'<?xml version="1.0"?><order id="4"><sku>A-1</sku><sku>B-2</sku></order>',
     {"order": {"@id": "4", "sku": ["A-1", "B-2"]}}),
    ("text/xml; charset=utf-8", b"<ping><at>now</at></ping>", {"ping": {"at": "now"}}),
    ("application/atom+xml", b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title></feed>',
     {"feed": {"@xmlns": {"": "http://www.w3.org/2005/Atom"}, "title": "T"}}),
    ("application/xml; charset=iso-8859-1", b"<city>Z\xfcrich</city>", {"city": "Zürich"}),
    ("application/x-www-form-urlencoded", b"a=1&b=2&b=3&c=x+y%21", {"a": "1", "b": ["2", "3"], "c": "x y!"}),
    ("application/x-www-form-urlencoded; charset=iso-8859-1", b"name=Jos%E9&city=Z\xfcrich",
     {"name": "José", "city": "Zürich"}),
    ("text/plain", "line one\nline two ✓".encode(), "line one\nline two ✓"),
    ("text/plain; charset=latin-1", b"caf\xe9", "café"),
    ("Text/Plain; Charset=UTF-8", b"mixed case", "mixed case"),
    ("application/json", b"", None),
]


@pytest.mark.parametrize("content_type, data, expected", REQUEST_FORMATS,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(REQUEST_FORMATS)])
def test_request_body_formats(server, content_type, data, expected):
    resp = echo(server, data, content_type)
    assert resp.status_code == 200, resp.text
    assert resp.json() == expected


def test_raw_bodies_when_the_pipeline_takes_any_type(server):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    resp = requests.post(f"{server.url}/hf/raw", data=png, headers={"Content-Type": "image/png"}, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"content_type": "image/png", "size": len(png), "base64": base64.b64encode(png).decode()}
    parsed = requests.post(f"{server.url}/hf/raw", json={"still": "parsed"}, timeout=10)
    assert parsed.json() == {"still": "parsed"}       # a type Hookline parses is parsed


def test_raw_bodies_for_a_named_unparseable_type(server):
    resp = requests.post(f"{server.url}/hf/pdf", data=b"%PDF-1.7\n...",
                         headers={"Content-Type": "application/pdf"}, timeout=10)
    assert resp.json() == {"content_type": "application/pdf", "size": 12}
    other = requests.post(f"{server.url}/hf/pdf", json={}, timeout=10)
    assert assert_problem(other, 415, "unsupported-media-type")["accepted"] == ["application/pdf"]


def test_an_unparseable_type_without_opt_in_is_415(server):
    assert_problem(echo(server, b"\x89PNG", "image/png"), 415, "unsupported-media-type")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded",
                                          "application/atom+xml"])
def test_content_types_restrict_with_415_and_the_accepted_list(server, content_type):
    resp = requests.post(f"{server.url}/hf/xml", data=b"<a/>", headers={"Content-Type": content_type}, timeout=10)
    doc = assert_problem(resp, 415, "unsupported-media-type")
    assert doc["accepted"] == ["application/xml", "text/xml"]
    assert resp.headers["Accept-Post"] == "application/xml, text/xml"


@pytest.mark.parametrize("content_type", ["application/xml", "application/xml; charset=utf-8", "TEXT/XML"])
def test_content_types_match_the_media_type_only(server, content_type):
    resp = requests.post(f"{server.url}/hf/xml", data=b"<a>1</a>", headers={"Content-Type": content_type},
                         timeout=10)
    assert resp.status_code == 200 and resp.json() == {"a": "1"}


def test_malformed_xml_is_400(server):
    doc = assert_problem(echo(server, b"<order><id>1</order>", "application/xml"), 400, "bad-xml")
    assert "mismatched tag" in doc["detail"]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE order [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<order><note>&xxe;</note></order>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">""" + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)) + \
    b"]><lolz>&lol9;</lolz>"


@pytest.mark.parametrize("body", [XXE, LAUGHS], ids=["xxe-file", "billion-laughs"])
def test_xml_entity_attacks_are_400_and_leak_nothing(server, body):
    started = time.monotonic()
    resp = echo(server, body, "application/xml")
    assert time.monotonic() - started < 2
    assert_problem(resp, 400, "xml-forbidden")
    assert "root:" not in resp.text and "lollol" not in resp.text
    assert_alive(server)


@pytest.mark.parametrize("doctype", ['<!DOCTYPE order SYSTEM "http://127.0.0.1:{port}/evil.dtd">',
                                     '<!DOCTYPE order [<!ENTITY % r SYSTEM "http://127.0.0.1:{port}/x"> %r;]>'],
                         ids=["external-dtd", "parameter-entity"])
def test_xml_never_makes_the_server_fetch_anything(server, doctype):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.3)
        body = f'<?xml version="1.0"?>{doctype.format(port=listener.getsockname()[1])}<order/>'
        assert_problem(echo(server, body.encode(), "application/xml"), 400, "xml-forbidden")
        with pytest.raises(socket.timeout):
            listener.accept()


@pytest.mark.parametrize("content_type, data, slug", [
    ("text/plain; charset=utf-8", b"caf\xe9", "bad-charset"),             # a Latin-1 byte declared UTF-8
    ("text/plain", b"caf\xe9", "bad-charset"),                            # UTF-8 is the default
    ("application/x-www-form-urlencoded", b"name=Jos%E9", "bad-charset"),  # the %-escape is Latin-1
    ("application/xml; charset=utf-8", b"<a>caf\xe9</a>", "bad-charset"),
    ("text/plain; charset=klingon", b"qapla", "bad-charset"),
    ("text/plain; charset=utf-7", b"+ADw-script+AD4-", "bad-charset"),
    ("application/json; charset=utf-8", b'{"a": "caf\xe9"}', "bad-json"),  # orjson checks UTF-8 as it parses
], ids=["text-utf8", "text-default", "form", "xml", "unknown", "utf-7", "json"])
def test_bytes_that_do_not_decode_in_the_charset_are_400(server, content_type, data, slug):
    assert_problem(echo(server, data, content_type), 400, slug)


# --- problem documents follow negotiation ----------------------------------------------------------------

@pytest.mark.parametrize("accept", ["application/xml", "application/problem+xml", "text/html, application/xml;q=0.5"])
def test_problem_as_xml_when_only_xml_is_acceptable(server, accept):
    resp = requests.post(f"{server.url}/hf/xml", json={}, headers={"Accept": accept}, timeout=10)
    assert resp.status_code == 415
    assert resp.headers["Content-Type"] == "application/problem+xml"
    doc = parse_body("application/xml", resp.content)["problem"]
    assert doc["type"] == "https://hookline.dev/problems/unsupported-media-type"
    assert doc["status"] == "415" and doc["accepted"] == ["application/xml", "text/xml"]


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/problem+json",
                                    "application/xml;q=0.5, application/json", "text/html"])
def test_problem_as_json_otherwise(server, accept):
    headers = {"Accept": accept} if accept else {}
    resp = requests.post(f"{server.url}/hf/xml", json={}, headers=headers, timeout=10)
    assert_problem(resp, 415, "unsupported-media-type")


def test_a_negotiated_problem_document_says_it_varies_by_accept(server):
    """A 404 is cacheable by default (RFC 9111 §4.2.2) and its format follows Accept, so it
    needs ``Vary: Accept`` (RFC 9110 §12.5.5), or a cache hands the XML problem to a JSON
    client. (Fails today: engine/server.py ``_Exchange.send`` negotiates the problem format via
    ``_problem_as`` but adds no Vary.)"""
    resp = requests.get(f"{server.url}/hf/nothing-here", headers={"Accept": "application/xml"}, timeout=10)
    assert resp.status_code == 404 and resp.headers["Content-Type"] == "application/problem+xml"
    assert "accept" in vary(resp), resp.headers


# --- response formats and negotiation -----------------------------------------------------------------------

NEGOTIATION = [
    (None, "application/json"),
    ("", "application/json"),
    ("*/*", "application/json"),
    ("application/xml;q=0.9, application/json;q=0.8", "application/xml"),     # RFC 9110 §12.4.2 weights
    ("text/*", "text/plain"),                                                # first text type offered
    ("application/*;q=0.5, application/json;q=0", "application/xml"),        # json refused, xml via the range
    ("text/csv, */*;q=0.1", "text/csv"),
    ("text/*;q=0.3, text/csv", "text/csv"),                                  # the exact range is more specific
    ("text/*, text/plain;q=0", "text/csv"),
    ("*/*;q=0.5, application/json;q=0.4", "application/xml"),                # json's own weight is lower
    ("application/json;q=0.5, application/xml;q=0.5", "application/json"),   # a tie goes to the first offer
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/xml"),   # a browser
    ("image/*, application/*;q=0.2", "application/json"),
    ("TEXT/CSV", "text/csv"),
    ("text/csv;charset=utf-8;q=0.7, application/json;q=0.6", "text/csv"),    # other parameters are ignored
    ("application/xml;q=2, text/csv", "text/csv"),                           # a range with a bad q is ignored
    ("no-slash, also junk", "application/json"),                             # no valid range: anything goes
]


@pytest.mark.parametrize("accept, expected", NEGOTIATION, ids=[repr(a) for a, _ in NEGOTIATION])
def test_accept_picks_the_response_format(server, accept, expected):
    headers = {"Accept": accept} if accept is not None else {}
    resp = echo(server, json.dumps(ROWS), **headers)
    assert resp.status_code == 200, resp.text
    assert media(resp) == expected
    assert "accept" in vary(resp)


@pytest.mark.parametrize("accept", ["*/*;q=0", "text/html", "image/png, text/html;q=0.5",
                                    "application/json;q=0, application/xml;q=0, text/*;q=0"])
def test_nothing_acceptable_is_406_problem(server, accept):
    resp = echo(server, json.dumps(ROWS), Accept=accept)
    doc = assert_problem(resp, 406, "not-acceptable")
    assert doc["title"] == "Not Acceptable"


def test_json_response(server):
    resp = echo(server, json.dumps(ROWS), Accept="application/json")
    assert resp.headers["Content-Type"] == "application/json" and resp.json() == ROWS


def test_xml_response(server):
    order = {"order": {"@id": "7", "sku": ["A-1", "B-2"], "note": "fish & chips <hot>"}}
    resp = echo(server, json.dumps(order), Accept="application/xml")
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert resp.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<order id="7">')
    assert parse_body("application/xml", resp.content) == order


def test_text_response(server):
    resp = echo(server, json.dumps("plain words\n"), Accept="text/plain")
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8" and resp.text == "plain words\n"
    other = echo(server, json.dumps({"n": 1}), Accept="text/plain")
    assert other.text == '{"n":1}'             # anything but a string is its JSON text


def test_csv_response(server):
    rows = [{"sku": "A-1", "qty": 2}, {"sku": "B,2", "note": 'say "hi"', "qty": None}]
    resp = echo(server, json.dumps(rows), Accept="text/csv")
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.content == b'sku,qty,note\r\nA-1,2,\r\n"B,2",,"say ""hi"""\r\n'
    assert list(csv.reader(io.StringIO(resp.text))) == [["sku", "qty", "note"], ["A-1", "2", ""],
                                                          ["B,2", "", 'say "hi"']]


def test_a_single_object_is_one_csv_row_under_its_header_line(server):
    resp = echo(server, json.dumps({"id": "A-1", "total": 9.5, "note": "a, b"}), Accept="text/csv")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert list(csv.reader(io.StringIO(resp.text))) == [["id", "total", "note"], ["A-1", "9.5", "a, b"]]


@pytest.mark.parametrize("accept, status", [("text/csv", 406), ("text/csv, application/json;q=0.1", 200)])
def test_a_value_without_a_csv_form(server, accept, status):
    resp = echo(server, json.dumps({"order": {"lines": [1, 2]}}), Accept=accept)
    assert resp.status_code == status
    if status == 200:
        assert media(resp) == "application/json"     # CSV could not hold it: the next best format


@pytest.mark.parametrize("accept, expected", [(None, "text/csv"), ("*/*", "text/csv"),
                                              ("application/json", "application/json"),
                                              ("application/*", "application/json")])
def test_respond_formats_restrict_and_order_the_offer(server, accept, expected):
    headers = {"Accept": accept} if accept else {}
    resp = requests.get(f"{server.url}/hf/report", headers=headers, timeout=10)
    assert resp.status_code == 200 and media(resp) == expected


def test_a_format_the_pipeline_does_not_offer_is_406(server):
    resp = requests.get(f"{server.url}/hf/report", headers={"Accept": "application/xml, text/plain"}, timeout=10)
    assert resp.status_code == 406
    assert resp.headers["Content-Type"] == "application/problem+xml"     # the problem itself can be XML


def test_the_406_detail_lists_only_what_this_pipeline_offers(server):
    """/hf/report offers CSV and JSON. Its 406 must not tell the client XML was acceptable.
    (Fails today: engine/server.py ``_negotiated`` raises one fixed detail naming all four
    formats, whatever ``respond.formats`` offers.)"""
    resp = requests.get(f"{server.url}/hf/report", headers={"Accept": "application/xml;q=1, application/problem+json"},
                        timeout=10)
    doc = assert_problem(resp, 406, "not-acceptable")
    assert "text/csv" in doc["detail"] and "application/json" in doc["detail"]
    assert "application/xml" not in doc["detail"] and "text/plain" not in doc["detail"], doc["detail"]


def test_respond_content_type_is_not_negotiated(server):
    resp = requests.get(f"{server.url}/hf/forced", headers={"Accept": "application/xml"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/vnd.hookline.v1+json"
    assert resp.json() == {"version": 1}
    assert "accept" not in vary(resp)


@pytest.mark.parametrize("accept, ctype", [(None, "application/problem+json"),
                                           ("application/json", "application/problem+json"),
                                           ("application/xml", "application/problem+xml")])
def test_a_pipelines_own_problem_document_follows_accept_like_hookline_s(server, accept, ctype):
    """docs/http.md: content_type skips negotiation, except application/problem+json."""
    resp = requests.get(f"{server.url}/hf/forced-problem", headers={"Accept": accept} if accept else {},
                        timeout=10)
    assert resp.status_code == 409 and resp.headers["Content-Type"] == ctype
    assert "accept" in vary(resp)
    assert "sold-out" in resp.text and "Sold out" in resp.text


# --- compression: request bodies ---------------------------------------------------------------------------

ORDER = {"order": 1, "lines": [{"sku": "A-1", "qty": 2}] * 50}
ORDER_BYTES = json.dumps(ORDER).encode()


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


CODINGS = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress, "deflate-raw": raw_deflate,
           "gzip-members": lambda d: gzip.compress(d[:100]) + gzip.compress(d[100:])}


@pytest.mark.parametrize("name", sorted(CODINGS))
def test_compressed_request_bodies(server, name):
    coding = name.partition("-")[0] if name != "x-gzip" else name
    resp = echo(server, CODINGS[name](ORDER_BYTES), **{"Content-Encoding": coding})
    assert resp.status_code == 200, resp.text
    assert resp.json() == ORDER


def test_br_request_body(server):
    brotli = pytest.importorskip("brotli")
    resp = echo(server, brotli.compress(ORDER_BYTES), **{"Content-Encoding": "br"})
    assert resp.status_code == 200 and resp.json() == ORDER


def test_a_corrupt_gzip_body_is_400(server):
    data = gzip.compress(ORDER_BYTES)
    assert_problem(echo(server, data[:-20], **{"Content-Encoding": "gzip"}), 400, "bad-encoding")
    assert_problem(echo(server, b"not gzip at all", **{"Content-Encoding": "gzip"}), 400, "bad-encoding")


@pytest.mark.parametrize("coding", ["zstd", "gzip, br", "compress"])
def test_an_unknown_content_encoding_is_415(server, coding):
    resp = echo(server, ORDER_BYTES, **{"Content-Encoding": coding})
    assert_problem(resp, 415, "unsupported-encoding")


def test_the_415_for_an_unknown_coding_names_the_codings_in_accept_encoding(server):
    """RFC 9110 §15.5.16 and docs/http.md: the 415 for a Content-Encoding carries
    ``Accept-Encoding`` listing what is decoded. engine/compression.py puts it on the BodyError
    (``headers``). (Fails today: engine/server.py ``_Exchange._check_encoding`` keeps only
    ``exc.problem()`` in ``self.early`` and drops ``exc.headers``.)"""
    resp = echo(server, ORDER_BYTES, **{"Content-Encoding": "zstd"})
    assert resp.status_code == 415
    assert "gzip" in resp.headers.get("Accept-Encoding", ""), resp.headers


def gzip_member(mib: int) -> bytes:
    """A valid gzip member holding ``mib`` MiB of zeros, in ~1 KB per MiB.

    After a full flush deflate restarts its matching, so each further MiB of zeros compresses
    to the same bytes: one real compression gives them, repeated; the trailer carries the true
    CRC-32 and size, so ``gzip -d`` accepts the result."""
    zeros = bytes(MiB)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush()[:-8]                                # the final empty block, without the trailer
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return first + again * (mib - 1) + end + struct.pack("<II", crc, (mib * MiB) & 0xFFFFFFFF)


class Bomb:
    """``count`` concatenated members, streamed (requests sends Content-Length from ``len``)."""

    def __init__(self, member: bytes, count: int):
        self.member, self.count = member, count

    def __iter__(self):
        return (self.member for _ in range(self.count))

    def __len__(self):
        return len(self.member) * self.count


def test_the_bomb_is_what_it_claims():
    member = gzip_member(100)
    d, size = zlib.decompressobj(31), 0
    data = member
    while data:
        size += len(d.decompress(data, MiB))
        data = d.unconsumed_tail
    assert d.eof and d.unused_data == b"" and size == 100 * MiB
    assert len(member) * 100 >= 10_000_000           # 100 members: ≥ 10 MB sent, 10,000 MiB decoded


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the most ever resident) of a process, in KiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in lines) if k in ("VmRSS", "VmHWM")}


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_gzip_bomb_is_413_without_the_memory(server, framing):
    """10 MB of gzip that decodes to ~10 GiB, to a pipeline taking 16 MiB: refused at 16 MiB
    while decoding; the server's RSS grows by far less than 50 MB and it keeps serving."""
    assert_alive(server)
    before = memory_kib(server.proc.pid)
    member = gzip_member(100)
    bomb = Bomb(member, 100)
    data = iter(bomb) if framing == "chunked" else bomb
    resp = requests.post(f"{server.url}/hf/upload", data=data, timeout=60,
                         headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})
    after = memory_kib(server.proc.pid)
    doc = assert_problem(resp, 413, "body-too-large")
    assert "decoded" in doc["detail"] and "16777216" in doc["detail"]     # the decoder refused it
    for key in ("VmRSS", "VmHWM"):       # now, and at its peak while decoding
        assert after[key] - before[key] < 50 * 1024, f"{key} grew from {before[key]} to {after[key]} KiB"
    assert_alive(server)
    fine = requests.post(f"{server.url}/hf/upload", data=gzip.compress(b"x" * MiB), timeout=10,
                         headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})
    assert fine.status_code == 200 and fine.json() == {"length": MiB}


# --- compression: responses ---------------------------------------------------------------------------------

BIG = {"padding": "abc" * 600}          # ~1.8 KB of JSON: over the 1024-byte threshold


def fetch_raw(server, accept_encoding, value=BIG):
    """POST ``value`` to the echo and return (response, body bytes as sent on the wire)."""
    resp = requests.post(f"{server.url}/hf/echo", data=json.dumps(value), stream=True, timeout=10,
                         headers={"Content-Type": "application/json", "Accept-Encoding": accept_encoding})
    return resp, resp.raw.read(decode_content=False)


def decode(coding, wire: bytes) -> bytes:
    if coding == "br":
        return pytest.importorskip("brotli").decompress(wire)
    return {None: lambda b: b, "gzip": gzip.decompress, "deflate": zlib.decompress}[coding](wire)


ENCODINGS = [
    ("gzip, deflate, br", "gzip"),        # equal weights: gzip first
    ("deflate, gzip, br, zstd", "gzip"),  # the order the client lists them in does not matter
    ("deflate", "deflate"),
    ("br", "br"),
    ("br;q=1, gzip;q=0.5", "br"),
    ("x-gzip", "gzip"),
    ("*", "gzip"),
    ("gzip;q=0.5, identity;q=0", "gzip"),   # identity refused: compressed
    ("gzip;q=0, identity", None),           # gzip refused
    ("gzip;q=0.5, identity", None),         # identity preferred
    ("identity", None),
    ("", None),
    ("zstd", None),                         # nothing Hookline has
    ("identity;q=0", None),                 # refuses identity, names nothing: sent as is, not 406
    ("identity;q=0, *;q=0", None),          # refuses everything: the same choice
]


@pytest.mark.parametrize("accept_encoding, coding", ENCODINGS, ids=[repr(a) for a, _ in ENCODINGS])
def test_response_compression_follows_accept_encoding(server, accept_encoding, coding):
    resp, wire = fetch_raw(server, accept_encoding)
    assert resp.status_code == 200
    assert resp.headers.get("Content-Encoding") == coding
    assert int(resp.headers["Content-Length"]) == len(wire)       # the compressed length
    assert json.loads(decode(coding, wire)) == BIG
    assert "accept-encoding" in vary(resp)
    if coding is not None:
        assert len(wire) < len(json.dumps(BIG)) / 4


@pytest.mark.parametrize("length, compressed", [(1023, False), (1024, True)])
def test_the_compression_threshold_is_1024_bytes(server, length, compressed):
    text = "x" * (length - 2)                          # a JSON string: two quotes around it
    resp, wire = fetch_raw(server, "gzip", text)
    assert (resp.headers.get("Content-Encoding") == "gzip") is compressed
    assert json.loads(decode("gzip" if compressed else None, wire)) == text


def test_a_small_response_is_not_compressed_and_does_not_vary_by_encoding(server):
    resp, wire = fetch_raw(server, "gzip, deflate, br", {"small": True})
    assert "Content-Encoding" not in resp.headers and json.loads(wire) == {"small": True}
    assert vary(resp) == {"accept"}


@needs_curl
def test_curl_compressed_gets_gzip_and_decodes_it(server):
    head = subprocess.run(["curl", "-s", "--compressed", "-D", "-", "-o", "/dev/null", "-H",
                           "Content-Type: application/json", "--data-binary", json.dumps(BIG), f"{server.url}/hf/echo"],
                          capture_output=True, text=True, timeout=30)
    body = subprocess.run(["curl", "-s", "--compressed", "-H", "Content-Type: application/json",
                           "--data-binary", json.dumps(BIG), f"{server.url}/hf/echo"],
                          capture_output=True, timeout=30)
    assert head.returncode == body.returncode == 0, head.stderr
    assert re.search(r"(?im)^content-encoding: gzip\r?$", head.stdout), head.stdout
    assert json.loads(body.stdout) == BIG


# --- the example pipelines of issue 3 (pipelines/, against the demo destination) -------------------------

UBL = (CORPUS / "xml" / "ubl-tc434-example1.xml").read_bytes()
SUMMARY = {"number": "12115118", "issue_date": "2015-01-09", "due_date": "2015-01-09", "currency": "EUR",
           "seller": "De Koksmaat", "buyer": "ODIN 59", "line_count": 20, "payable_amount": 250.33}


def post_invoice(server, data: bytes, content_type="application/xml", **headers):
    return requests.post(f"{server.url}/invoices/ubl", data=data, timeout=10,
                         headers={"Content-Type": content_type, **headers})


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml; charset=utf-8"])
def test_invoice_summary_of_the_corpus_invoice(examples_server, content_type):
    resp = post_invoice(examples_server, UBL, content_type)
    assert resp.status_code == 200, resp.text
    assert resp.json() == SUMMARY


def test_invoice_summary_of_a_one_line_gzipped_invoice(examples_server):
    text = UBL.decode()
    lines = re.findall(r"\s*<cac:InvoiceLine>.*?</cac:InvoiceLine>", text, flags=re.S)
    assert len(lines) == 20
    one = text.replace("".join(lines[1:]), "").encode()
    resp = post_invoice(examples_server, gzip.compress(one), **{"Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["line_count"] == 1


def test_invoice_summary_refuses_what_is_no_ubl_invoice(examples_server):
    assert_problem(post_invoice(examples_server, b'{"ID": "1"}', "application/json"), 415, "unsupported-media-type")
    credit = UBL.replace(b"<Invoice ", b"<CreditNote ").replace(b"</Invoice>", b"</CreditNote>")
    assert_problem(post_invoice(examples_server, credit), 422, "validation")
    assert_problem(post_invoice(examples_server, XXE), 400, "xml-forbidden")


def test_invoice_summary_as_xml(examples_server):
    resp = post_invoice(examples_server, UBL, Accept="application/xml")
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    summary = parse_body("application/xml", resp.content)["response"]
    assert summary["number"] == "12115118" and summary["line_count"] == "20"


def test_price_list_formats(examples_server):
    url = f"{examples_server.url}/price-list"
    as_json = requests.get(url, timeout=10)
    assert as_json.status_code == 200 and media(as_json) == "application/json"
    assert as_json.headers["Cache-Control"] == "max-age=300"
    rows = as_json.json()
    assert len(rows) == 15 and {r["currency"] for r in rows} == {"EUR", "USD", "GBP"}
    as_csv = requests.get(url, headers={"Accept": "text/csv"}, timeout=10)
    assert media(as_csv) == "text/csv"
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [{**r, "unit_price": float(r["unit_price"])} for r in table] == rows
    as_xml = requests.get(url, headers={"Accept": "application/xml;q=0.9, application/json;q=0.8"}, timeout=10)
    assert parse_body("application/xml", as_xml.content)["response"]["item"][0]["sku"] == rows[0]["sku"]
    assert requests.get(url, headers={"Accept": "text/plain"}, timeout=10).status_code == 406


def test_price_list_agrees_with_the_pricing_service(examples_server, demo_destination):
    """The list is a literal in the pipeline; it must be what the demo pricing service says."""
    for row in requests.get(f"{examples_server.url}/price-list", timeout=10).json():
        priced = requests.get(f"{demo_destination.url}/pricing/prices/{row['sku']}",
                              params={"currency": row["currency"]}, timeout=10).json()
        assert priced["amount"] == row["unit_price"], row


def test_price_list_for_the_shop_front_end(examples_server):
    pre = requests.options(f"{examples_server.url}/price-list", timeout=10, headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    got = requests.get(f"{examples_server.url}/price-list", headers={"Origin": "https://shop.example"}, timeout=10)
    assert got.headers["Access-Control-Allow-Origin"] == "https://shop.example"


# --- docs/http.md: every curl line runs -----------------------------------------------------------------

DOC = ROOT / "docs" / "http.md"
SH_BLOCK = re.compile(r"^```sh[ \t]*\n(.*?)^```", re.M | re.S)
EXPECTED = re.compile(r"\s+#\s*→\s*(\d{3})\b.*$")


def doc_commands(text: str) -> list[tuple[str, str | None]]:
    """``(command, expected status)`` for each line of a ```sh block that runs curl; the
    status comes from a trailing ``# → 406`` comment (else any 2xx)."""
    out = []
    for block in SH_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if re.search(r"(^|\|\s*)curl ", line):
                m = EXPECTED.search(line)
                out.append((EXPECTED.sub("", line), m.group(1) if m else None))
    return out


DOC_COMMANDS = doc_commands(DOC.read_text())


def test_docs_have_curl_examples():
    assert len(DOC_COMMANDS) >= 12
    assert all("localhost:8080" in c for c, _ in DOC_COMMANDS)


@needs_curl
@pytest.mark.parametrize("command, status", DOC_COMMANDS, ids=[c.split("localhost:8080", 1)[-1][:50]
                                                               for c, _ in DOC_COMMANDS])
def test_docs_curl_example_works(examples_server, command, status):
    """Run as written (bash, from the repository root, so ``@tests/data/...`` and pipes work),
    with ``localhost:8080`` pointed at a server set up like ``make run``."""
    address = examples_server.url.removeprefix("http://")
    script = command.replace("localhost:8080", address) + r" -w '\n%{http_code}'"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=ROOT, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    output, _, code = done.stdout.decode("utf-8", "replace").rpartition("\n")
    if status is None:
        assert code.startswith("2"), f"HTTP {code}: {output[-500:]}"
    else:
        assert code == status, f"HTTP {code}, not {status}: {output[-500:]}"
