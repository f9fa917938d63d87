"""``call`` steps against a real local destination (a Tornado app in a thread).

The destination records every request it gets (method, raw path, query,
headers, body) and counts the TCP connections it accepts; the pipelines in
tests/pipelines/runtime/call/ reach it through ``${env:DEST_URL}`` and a
closed port through ``${env:DOWN_URL}``.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import threading
import time
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

import pytest
import requests
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from conftest import ROOT, free_port, start_hookline
from engine.formats import parse_body

PIPELINES = ROOT / "tests" / "pipelines" / "runtime" / "call"
PROBLEM = "application/problem+json"
TOKEN = "tok-" + secrets.token_hex(16)


# -- the destination -----------------------------------------------------------------------------

class _Record(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, dest):
        self.dest = dest

    def _record(self, *_):
        req = self.request
        self.dest.requests.append({
            "method": req.method, "path": req.path,
            "query": {k: [v.decode() for v in vs] for k, vs in req.query_arguments.items()},
            "headers": dict(req.headers.get_all()), "body": req.body,
        })
        self.write({"n": len(self.dest.requests)})

    get = post = put = patch = delete = _record


class _Slow(web.RequestHandler):
    async def get(self):
        ms = int(self.get_query_argument("ms"))
        await asyncio.sleep(ms / 1000)
        self.write({"slept_ms": ms})


class _Status(web.RequestHandler):
    def get(self, code):
        self.set_status(int(code))
        self.write({"code": int(code)})


class _Big(web.RequestHandler):
    async def get(self, mode):
        size = int(self.get_query_argument("size"))
        self.set_header("Content-Type", "text/plain")
        if mode == "chunked":        # no Content-Length: the cap must count while reading
            for _ in range(size // 500):
                self.write(b"b" * 500)
                await self.flush()
        else:
            self.write(b"a" * size)


SOAP_ANSWER = (b'<?xml version="1.0" encoding="utf-8"?>\n'
               b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
               b'<soap:Body><r:PlaceOrderResponse xmlns:r="urn:test"><r:Number>SO-1</r:Number>'
               b'<r:Total currency="EUR">12.50</r:Total></r:PlaceOrderResponse></soap:Body></soap:Envelope>')
ANSWERS = {   # /answer/<kind> → (Content-Type or None, body)
    "xml": ("application/xml; charset=utf-8",
            b'<r xmlns:p="urn:p"><p:id>7</p:id><line n="1">a</line><line n="2">b</line></r>'),
    "soap": ("text/xml; charset=utf-8", SOAP_ANSWER),
    "vendor-xml": ("application/vnd.erp+xml", b"<ok>yes</ok>"),
    "latin1-xml": ("text/xml; charset=iso-8859-1", "<name>Jos\u00e9</name>".encode("latin-1")),
    "form": ("application/x-www-form-urlencoded", b"a=1&b=2&b=3&c=%C3%A9"),
    "text": ("text/plain; charset=utf-8", "h\u00e9llo".encode()),
    "html": ("text/html", b"<p>hi</p>"),
    "none": (None, b"OK"),
    "json": ("application/problem+json", b'{"a": 1}'),
    "xml-as-text": ("text/plain", b"<r><a>1</a></r>"),
    "bad-xml": ("application/xml", b"<r><a></r>"),
    "bad-json": ("application/json", b"{nope"),
    "dtd": ("application/xml", b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'),
    "deep": ("application/xml", b"<a>" * 150 + b"</a>" * 150),
}


class _Answer(web.RequestHandler):
    def get(self, kind):
        content_type, body = ANSWERS[kind]
        if content_type:
            self.set_header("Content-Type", content_type)
        else:
            self.clear_header("Content-Type")
        self.write(body)


class _Ping(web.RequestHandler):
    def get(self):
        self.write({"pong": True})


class _CountingServer(HTTPServer):
    def handle_stream(self, stream, address):
        self.accepted += 1
        return super().handle_stream(stream, address)


class Destination:
    """A Tornado app on a free loopback port, served from a background thread."""

    def __init__(self):
        self.requests: list[dict] = []
        self._sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self._sockets[0].getsockname()[1]}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def connections(self) -> int:
        return self._server.accepted

    def _app(self):
        return web.Application([
            (r"/slow", _Slow), (r"/status/(\d+)", _Status), (r"/big/(length|chunked)", _Big),
            (r"/ping", _Ping), (r"/answer/([a-z0-9-]+)", _Answer), (r"/.*", _Record, {"dest": self}),
        ])

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = _CountingServer(self._app())
        self._server.accepted = 0
        self._server.add_sockets(self._sockets)
        self._ready.set()
        self._loop.run_forever()

    def stop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def find(self, marker: str) -> list[dict]:
        return [r for r in self.requests if marker in r["path"] or marker in unquote(r["path"])]


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dest():
    d = Destination()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def server(dest):
    env = {"DEST_URL": dest.url, "DOWN_URL": f"http://127.0.0.1:{free_port()}", "TOKEN": TOKEN}
    proc = start_hookline([PIPELINES], env=env, tail=True)
    yield proc
    proc.stop()


def assert_problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == PROBLEM
    assert "Traceback" not in resp.text and TOKEN not in resp.text
    doc = resp.json()
    assert doc["status"] == status and doc["title"] and doc["type"].startswith("https://")
    return doc


def get(server, path, **kw):
    return requests.get(server.url + path, timeout=10, **kw)


# -- what the destination receives ---------------------------------------------------------------

def test_call_passes_method_query_headers_and_body(server, dest):
    resp = requests.post(server.url + "/c/pass/item-1?single=one&tag=a&tag=b&ignored=x",
                         json={"id": 7, "lines": [{"sku": "A", "qty": 2}]},
                         headers={"X-Trace": "abc-123"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == 200 and resp.json()["destination"]["n"] >= 1
    [got] = dest.find("item-1")
    assert got["method"] == "PUT"
    assert got["path"] == "/record/item-1"
    assert got["query"] == {"single": ["one"], "tag": ["a", "b"]}
    assert got["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert got["headers"]["X-Trace"] == "trace-abc-123"
    assert got["headers"]["Content-Type"] == "application/json"
    assert json.loads(got["body"]) == {"order": 7, "lines": [{"sku": "A", "qty": 2}]}


@pytest.mark.parametrize("value", ["..", "."])
def test_a_dot_segment_value_is_refused_and_nothing_is_sent(server, dest, value):
    """URL parsers resolve '.'/'..' (even as %2E) as dot segments: such a value must not be sent."""
    before = len(dest.requests)
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/c/pass/" + quote(value, safe="").replace(".", "%2E"), body=b'{"id": 1}',
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 422, body
    assert resp.getheader("Content-Type") == PROBLEM
    assert dest.requests[before:] == []


@pytest.mark.parametrize("value", ["a/b", "../../admin", "x?y=1#frag", "user@evil.example", "p%2Fq",
                                   "a/../b?c#d@e"])
def test_url_expression_stays_one_encoded_path_segment(server, dest, value):
    marker = secrets.token_hex(4)
    item = marker + value
    before = len(dest.requests)
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/c/pass/" + quote(item, safe=""), body=b'{"id": 1}',
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    [got] = dest.requests[before:]
    prefix, _, segment = got["path"].partition("/record/")
    assert prefix == "" and segment, f"{item!r} was sent to {got['path']!r}, not below /record/"
    assert "/" not in segment and segment not in ("..", "."), f"{item!r} became the path {got['path']!r}"
    assert unquote(segment) == item
    assert got["query"] == {}


def test_deeply_nested_body_forwarded_by_a_call_is_not_a_500(server, dest):
    """The request body (300 levels; orjson reads 1024) becomes the call body (orjson writes 255)."""
    body = b"[" * 300 + b"]" * 300
    resp = requests.post(server.url + "/c/forward", data=body, timeout=10)
    assert resp.status_code < 500, resp.text
    if resp.status_code == 200:
        assert json.loads(dest.find("forward")[-1]["body"]) == json.loads(body)
    else:
        assert resp.headers["Content-Type"] == PROBLEM


def test_token_never_reaches_responses_or_the_log(server, dest):
    texts = []
    for path in ("/c/down", "/c/slow", "/c/status500", "/c/conflict", "/c/big/length"):
        resp = get(server, path)
        texts.append(json.dumps(dict(resp.headers)) + resp.text)
    resp = requests.post(server.url + "/c/pass/leak", json={"id": 1}, timeout=10)
    texts.append(json.dumps(dict(resp.headers)) + resp.text)
    assert dest.find("leak")[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert not [t for t in texts if TOKEN in t]
    time.sleep(0.1)
    log = server.log.text()
    assert "step 'c'" in log          # the failures above were logged...
    assert TOKEN not in log           # ...without the secret


# -- failures ------------------------------------------------------------------------------------

def test_destination_down_is_502(server):
    doc = assert_problem(get(server, "/c/down"), 502)
    assert doc["run_id"] and "unreachable" in doc["detail"]


def test_slow_destination_is_504_within_timeout(server):
    started = time.monotonic()
    doc = assert_problem(get(server, "/c/slow"), 504)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.5, elapsed
    assert "0.5 s" in doc["detail"]


def test_destination_500_is_502(server):
    doc = assert_problem(get(server, "/c/status500"), 502)
    assert "500" in doc["detail"]


def test_destination_409_is_routed_to_409(server):
    resp = get(server, "/c/conflict")
    assert resp.status_code == 409
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"error": "conflict", "upstream": 409}


@pytest.mark.parametrize("path, error", [("/c/continue/down", "unreachable"), ("/c/continue/slow", "timeout")])
def test_on_error_continue_lets_a_route_answer_503(server, path, error):
    started = time.monotonic()
    resp = get(server, path)
    assert time.monotonic() - started < 1.5
    assert resp.status_code == 503, resp.text
    assert resp.json() == {"error": error, "status": 0, "body": None}


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_response_over_max_response_bytes_is_502(server, mode):
    doc = assert_problem(get(server, f"/c/big/{mode}"), 502)
    assert "1000 bytes" in doc["detail"]


def test_response_under_max_response_bytes_passes(server):
    resp = get(server, "/c/small")
    assert resp.status_code == 200 and resp.json() == {"size": 900}


def test_sequential_calls_reuse_connections(server, dest):
    get(server, "/c/ping")                       # warm the pool
    before = dest.connections
    with requests.Session() as s:
        for _ in range(50):
            resp = s.get(server.url + "/c/ping", timeout=10)
            assert resp.status_code == 200 and resp.json() == {"pong": True}
    opened = dest.connections - before
    assert opened <= 3, f"50 calls opened {opened} connections at the destination"


# -- body formats ----------------------------------------------------------------------------------

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def sent(dest, path: str, before: int) -> dict:
    [got] = [r for r in dest.requests[before:] if r["path"] == path]
    return got


def test_format_xml_sends_a_document_a_strict_parser_reads(server, dest):
    order = {"order": {"@id": "A-1", "@xmlns": {"": "urn:shop"}, "note": "fish & chips <2>\r\n",
                       "line": [{"sku": "X", "qty": 2}, {"sku": "Y", "qty": 1.5}], "gift": True, "memo": None}}
    before = len(dest.requests)
    resp = requests.post(server.url + "/c/xml", json=order, timeout=10)
    assert resp.status_code == 200, resp.text
    got = sent(dest, "/record/xml", before)
    assert got["headers"]["Content-Type"] == "application/xml; charset=utf-8"
    assert got["body"].startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = ElementTree.fromstring(got["body"])          # expat: any well-formedness error raises
    assert root.tag == "{urn:shop}order" and root.get("id") == "A-1"
    assert root.findtext("{urn:shop}note") == "fish & chips <2>\r\n"
    assert [line.findtext("{urn:shop}qty") for line in root.iter("{urn:shop}line")] == ["2", "1.5"]
    assert parse_body("application/xml", got["body"]) == {"order": {
        "@xmlns": {"": "urn:shop"}, "@id": "A-1", "note": "fish & chips <2>\r\n",
        "line": [{"sku": "X", "qty": "2"}, {"sku": "Y", "qty": "1.5"}], "gift": "true", "memo": ""}}


def test_format_xml_builds_a_soap_envelope_with_the_authors_content_type(server, dest):
    before = len(dest.requests)
    resp = requests.post(server.url + "/c/soap", json={"Sku": "TEE-M", "Qty": 2}, timeout=10)
    assert resp.status_code == 200, resp.text
    got = sent(dest, "/record/soap", before)
    assert got["headers"]["Content-Type"] == "text/xml; charset=utf-8"
    assert got["headers"]["Soapaction"] == '"urn:test#PlaceOrder"'
    envelope = ElementTree.fromstring(got["body"])
    assert envelope.tag == f"{{{SOAP_NS}}}Envelope"
    assert [child.tag for child in envelope] == [f"{{{SOAP_NS}}}Header", f"{{{SOAP_NS}}}Body"]
    order = envelope.find(f"{{{SOAP_NS}}}Body/{{urn:test}}PlaceOrder")
    assert order.findtext("{urn:test}Sku") == "TEE-M" and order.findtext("{urn:test}Qty") == "2"
    assert got["body"].decode().count("xmlns:soap=") == 1


@pytest.mark.parametrize("body, where", [
    ({"a": 1, "b": 2}, "cannot be written as xml: an XML document has one root element"),
    ([{"a": 1}], "cannot be written as xml: an XML document has one root element"),
    ({"order": {"bad name": 1}}, "at /order/bad name: 'bad name' is not an XML element name"),
    ({"order": {"lines": [[1, 2]]}}, "at /order/lines/0: a list directly inside a list"),
    ({"order": {"x:id": 1}}, "at /order/x:id: prefix 'x' is not declared"),
    ({"order": {"@at": {"a": 1}}}, "at /order/@at: an attribute holds text"),
    ({"order": {"a/b~": 1}}, "at /order/a~1b~0: 'a/b~' is not an XML element name"),
    ({"order": {"note": ["ok", "\u000b"]}}, "at /order/note/1: U+000B at character 0 cannot be written"),
])
def test_a_body_that_cannot_be_xml_is_422_naming_the_place_and_nothing_is_sent(server, dest, body, where):
    before = len(dest.requests)
    doc = assert_problem(requests.post(server.url + "/c/xml", json=body, timeout=10), 422)
    assert doc["type"].endswith("/expression-failed") and doc["run_id"]
    assert doc["detail"].startswith("step 'c': call.body cannot be written as xml")
    assert where in doc["detail"]
    assert [r for r in dest.requests[before:] if r["path"] == "/record/xml"] == []


def test_format_form_sends_what_the_inbound_form_mapping_reads_back(server, dest):
    before = len(dest.requests)
    body = {"name": "Jo Ann", "tags": ["a", "b"], "n": 3, "ok": True, "skip": None, "caf\u00e9": "\u00fc&="}
    resp = requests.post(server.url + "/c/form", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    got = sent(dest, "/record/form", before)
    assert got["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_body(got["headers"]["Content-Type"], got["body"]) == {
        "name": "Jo Ann", "tags": ["a", "b"], "n": "3", "ok": "true", "caf\u00e9": "\u00fc&="}
    doc = assert_problem(requests.post(server.url + "/c/form", json={"a": {"b": 1}}, timeout=10), 422)
    assert "cannot be written as form at /a: a form field holds text" in doc["detail"]


def test_format_text_sends_the_string_as_it_is(server, dest):
    before = len(dest.requests)
    text = "SKU;QTY\r\nTEE-M;2\n\u00e9"
    resp = requests.post(server.url + "/c/text", json={"text": text}, timeout=10)
    assert resp.status_code == 200, resp.text
    plain, csv_ = sent(dest, "/record/text-plain", before), sent(dest, "/record/text-csv", before)
    assert plain["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert csv_["headers"]["Content-Type"] == "text/csv; charset=utf-8"
    assert plain["body"] == csv_["body"] == text.encode()
    doc = assert_problem(requests.post(server.url + "/c/text", json={"text": ["a"]}, timeout=10), 422)
    assert "call.format text sends a string, not a list" in doc["detail"]


# -- answers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, body", [
    ("xml", {"r": {"@xmlns": {"p": "urn:p"}, "id": "7",
                   "line": [{"@n": "1", "#text": "a"}, {"@n": "2", "#text": "b"}]}}),
    ("soap", {"Envelope": {"@xmlns": {"soap": SOAP_NS}, "Body": {"PlaceOrderResponse": {
        "@xmlns": {"r": "urn:test"}, "Number": "SO-1", "Total": {"@currency": "EUR", "#text": "12.50"}}}}}),
    ("vendor-xml", {"ok": "yes"}),
    ("latin1-xml", {"name": "Jos\u00e9"}),
    ("form", {"a": "1", "b": ["2", "3"], "c": "\u00e9"}),
    ("text", "h\u00e9llo"),
    ("html", "<p>hi</p>"),
    ("none", "OK"),
    ("json", {"a": 1}),
    ("xml-as-text", "<r><a>1</a></r>"),
])
def test_an_answer_is_read_by_its_content_type_as_request_bodies_are(server, kind, body):
    resp = get(server, f"/c/answer/{kind}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": 200, "body": body}


@pytest.mark.parametrize("kind, says", [
    ("bad-xml", "the answer is not well-formed XML: mismatched tag"),
    ("bad-json", "the answer is not valid JSON"),
    ("dtd", "DTDs, entity declarations and external references are refused"),
    ("deep", "elements nested deeper than 100"),
])
def test_an_answer_that_does_not_parse_is_502_not_500(server, kind, says):
    doc = assert_problem(get(server, f"/c/answer/{kind}"), 502)
    assert doc["type"].endswith("/bad-gateway") and doc["title"] == "Unreadable destination answer"
    assert doc["detail"].startswith("step 'c': ") and says in doc["detail"], doc["detail"]


def test_an_unreadable_answer_with_on_error_continue_is_an_output(server):
    resp = get(server, "/c/answer-continue/bad-json")
    assert resp.status_code == 503, resp.text
    assert resp.json() == {"error": "bad-response", "status": 200, "body": None}
    assert get(server, "/c/answer-continue/json").json() == {"body": {"a": 1}}


@pytest.mark.parametrize("kind, status, body", [
    ("xml-as-text", 200, {"body": {"r": {"a": "1"}}}),
    ("html", 200, {"body": {"p": "hi"}}),
    ("none", 502, None),
])
def test_response_format_forces_the_parser(server, kind, status, body):
    resp = get(server, f"/c/answer-forced/{kind}")
    assert resp.status_code == status, resp.text
    if body is not None:
        assert resp.json() == body
    else:
        assert "not well-formed XML" in assert_problem(resp, 502)["detail"]


# -- a {…} that cannot be evaluated (docs/steps/call.md, "Failure") ------------------------------

@pytest.mark.parametrize("body", [{"u": 5, "h": "ab"}, {"u": "ab", "h": 5}, {"h": "ab"}])
def test_a_url_or_header_expression_that_fails_is_422_and_nothing_is_sent(server, dest, body):
    """length() of a number (or of null) is a JMESPath type error at request time."""
    before = len(dest.requests)
    resp = requests.post(server.url + "/c/url-fails", json=body, timeout=10)
    assert resp.status_code == 422, resp.text
    assert resp.headers["Content-Type"] == PROBLEM
    assert resp.json()["type"] == "https://hookline.dev/problems/expression-failed"
    assert dest.requests[before:] == []


def test_the_same_expressions_on_a_fitting_request_are_sent(server, dest):
    resp = requests.post(server.url + "/c/url-fails", json={"u": "ab", "h": "abc"}, timeout=10)
    assert resp.status_code == 200, resp.text
    [got] = [r for r in dest.requests if r["path"] == "/record/len-2"]
    assert got["headers"]["X-Length"] == "3"
