"""Properties of the server under arbitrary input (hypothesis, real HTTP).

Any request — odd method, junk path, random headers, any body and content
type — gets an answer below 500, and every non-2xx answer is a problem
document. Malformed HTTP (sent over raw sockets, which ``requests`` refuses to
produce) gets a 400 or a closed connection. After each case the server still
answers a good request. One ``hookline serve`` (tests/pipelines/runtime/props)
per module.
"""
from __future__ import annotations

import http.client
import json
import socket
import string
from urllib.parse import quote, urlencode, urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from conftest import HTTP_PROPERTY_SETTINGS, ROOT, serving

PIPELINES = ROOT / "tests" / "pipelines" / "runtime" / "props"
PROBLEM = "application/problem+json"
SETTINGS = HTTP_PROPERTY_SETTINGS


@pytest.fixture(scope="module")
def server():
    yield from serving([PIPELINES])


def assert_alive(server):
    resp = requests.get(server.url + "/p/ok", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"ok": True}


def check_answer(status: int, headers, body: bytes, what: str, head: bool = False):
    """Below 500; when not 2xx, a problem document with a matching status (for HEAD: its headers)."""
    assert status < 500, f"{what} → {status}: {body[:300]!r}"
    if head:
        assert body == b"", f"{what} → a body in the answer to HEAD"
    if 200 <= status < 300:
        return
    assert headers.get("Content-Type") == PROBLEM, f"{what} → {status} {headers.get('Content-Type')}"
    if head:
        return
    assert b"Traceback" not in body and b'File "' not in body
    doc = json.loads(body)
    assert {"type", "title", "status"} <= doc.keys() and doc["status"] == status, doc


# -- strategies ---------------------------------------------------------------------------------

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND",
           "M-SEARCH", "X_ODD~1", "PURGE", "get", "Post", "CONNECTX"]
PREFIXES = ["/p/echo/", "/p/echo/x", "/p/strict", "/p/ok", "/", "/nope/", "//p/echo/", "/p/echo/x/y/"]
JUNK = ["%", "%2F", "%2f", "%00", "%FF", "%zz", "%C3%28", "%E2%82%AC", "..", ".", "/", "//", "a", "%25",
        ";", "%0D%0A", "%20", "+", "~", "%7E", "%ED%A0%80", "%F0%9F%92%A9"]
TOKEN_CHARS = string.ascii_letters + string.digits + "-_!#$%&'*+.^`|~"
RESERVED_HEADERS = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te"}

unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
paths = st.builds(
    lambda prefix, tail: prefix + tail,
    st.sampled_from(PREFIXES),
    st.one_of(unicode_text.map(lambda t: quote(t, safe="")),
              st.lists(st.sampled_from(JUNK), max_size=8).map("".join),
              st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?"),
                      max_size=20)),
)
queries = st.lists(st.tuples(st.sampled_from(["n", "a", "tag", "x y", "ä", ""]), unicode_text), max_size=4)
header_names = st.text(TOKEN_CHARS, min_size=1, max_size=16).filter(lambda n: n.lower() not in RESERVED_HEADERS)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=40).map(str.strip)
headers = st.dictionaries(st.one_of(header_names, st.just("X-Mode")), header_values, max_size=5)
content_types = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=zz", "application/json; charset=latin-1",
                                 "application/problem+json", "*/*", "garbage"])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | unicode_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=20)
strict_bodies = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(), st.text(max_size=5), st.none())},
    optional={"tags": st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
              "values": st.lists(st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                                           st.text(max_size=3)), max_size=4)})
bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    strict_bodies.map(lambda v: json.dumps(v).encode()),
    st.tuples(json_values, st.integers(0, 60)).map(lambda t: json.dumps(t[0]).encode()[:t[1]]),
    st.integers(1, 5000).map(lambda n: b"[" * n),
    st.integers(1, 1500).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 600).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b"1e400", b"-1e400", b"9" * 400, b"123456789012345678901234567890", b"0.1e-99999",
                     b"NaN", b"Infinity", b'{"id": 1e308}', b'{"id": 123456789012345678901234567890}',
                     b'"\\ud800"', b'{"a": "\xff\xfe"}', b"\xef\xbb\xbf{}", b"{}\x00"]),
    st.binary(max_size=40).map(lambda b: b'{"s": "' + b + b'\xc3\x28"}'),
)


# -- requests through `requests` --------------------------------------------------------------------

def send(server, method, path, query, hdrs, body=None, ctype=None):
    """Send one request and check the answer; requests that ``requests`` cannot build are skipped."""
    url = server.url + path + ("?" + urlencode(query) if query else "")
    if ctype:
        hdrs = {**hdrs, "Content-Type": ctype}
    try:
        prepared = server.session.prepare_request(requests.Request(method, url, headers=hdrs, data=body))
    except (requests.RequestException, ValueError, UnicodeError):
        return                            # requests refuses to build it; the raw tests cover those
    what = f"{method} {prepared.url} {hdrs} body={body[:80] if body else body!r}"
    try:
        resp = server.session.send(prepared, timeout=10)
    except requests.ConnectionError as exc:
        raise AssertionError(f"{what}: connection closed without an answer ({exc})") from None
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, UnicodeError):
        return                            # refused by the client while sending
    check_answer(resp.status_code, resp.headers, resp.content, what, head=prepared.method == "HEAD")
    assert_alive(server)


@SETTINGS
@given(method=st.sampled_from(METHODS), path=paths, query=queries, hdrs=headers)
def test_any_method_path_and_headers_get_a_sub_500_answer(server, method, path, query, hdrs):
    send(server, method, path, query, hdrs)


@SETTINGS
@given(method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]),
       path=st.sampled_from(["/p/echo/x", "/p/echo/%C3%A9", "/p/strict", "/p/ok", "/nope"]),
       query=queries, hdrs=headers, body=bodies, ctype=content_types)
def test_any_body_and_content_type_get_a_sub_500_answer(server, method, path, query, hdrs, body, ctype):
    send(server, method, path, query, hdrs, body, ctype)


# -- raw sockets --------------------------------------------------------------------------------------

def raw_exchange(server, data: bytes, timeout: float = 3.0):
    """Send ``data`` on a fresh connection → ``(status, headers, body)`` or ``None`` if it was closed."""
    parts = urlsplit(server.url)
    method = "HEAD" if data.startswith(b"HEAD ") else "GET"      # HEAD: read no body
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            sock.sendall(data)
            resp.begin()
            return resp.status, resp.headers, resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                http.client.IncompleteRead):
            return None


def check_raw(server, data: bytes):
    answer = raw_exchange(server, data)
    if answer is not None:
        status, hdrs, body = answer
        if status == 400 and not body:
            return                         # Tornado's own bare 400 for a malformed message
        check_answer(status, hdrs, body, repr(data[:120]), head=data.startswith(b"HEAD "))
    assert_alive(server)


MALFORMED = {
    "garbage first line": b"GARBAGE\r\n\r\n",
    "binary first line": b"\x00\x01\x02\xff\xfe\r\n\r\n",
    "missing version": b"GET /p/ok\r\n\r\n",
    "missing target and version": b"GET\r\n\r\n",
    "bad version": b"GET /p/ok HTTP/9.9\r\n\r\n",
    "http2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "lower-case version": b"GET /p/ok http/1.1\r\n\r\n",
    "header without colon": b"GET /p/ok HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "space before colon": b"GET /p/ok HTTP/1.1\r\nHost : x\r\n\r\n",
    "non-numeric length": b"POST /p/echo/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    "negative length": b"POST /p/echo/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "two lengths": b"POST /p/echo/x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "length and chunked": b"POST /p/echo/x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
    "bad chunk size": b"POST /p/echo/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "unknown transfer coding": b"POST /p/echo/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    "absolute-form target": b"GET http://evil.example/p/ok HTTP/1.1\r\n\r\n",
    "asterisk target": b"OPTIONS * HTTP/1.1\r\n\r\n",
    "NUL in path": b"GET /p/echo/a\x00b HTTP/1.1\r\n\r\n",
    "huge header": b"GET /p/ok HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_gets_400_or_close(server, data):
    check_raw(server, data)


def test_superscript_digit_content_length_is_a_clean_400(server):
    """``"²".isdigit()`` is True but ``int("²")`` raises: the delegate must not crash on it."""
    before = len(server.log.lines)
    answer = raw_exchange(server, b"POST /p/echo/x HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n{}")
    assert answer is not None and answer[0] == 400, f"answer: {answer!r}"
    assert_alive(server)
    assert "Uncaught exception" not in "".join(server.log.lines[before:])


request_lines = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.builds(lambda m, t, v: b" ".join(x for x in (m, t, v) if x is not None),
              st.sampled_from([b"GET", b"POST", b"get", b"G\x00T", b"", b"HEAD", b"\xff"]),
              st.one_of(st.none(), st.sampled_from([b"/p/ok", b"/p/echo/%zz", b"*", b"p/ok", b"/p/echo/\xff",
                                                    b"/p/echo/a b", b"//"])),
              st.one_of(st.none(), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1", b"HTTP/2",
                                                    b"HTTP/1.1 extra", b"HTTPS/1.1", b"http/1.1"]))),
)
header_lines = st.lists(st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.builds(lambda n, v: n + b": " + v,
              st.text(TOKEN_CHARS, min_size=1, max_size=10).map(str.encode).filter(
                  lambda n: n.lower() not in {b"content-length", b"transfer-encoding", b"expect"}),
              st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)),
), max_size=4)


@SETTINGS
@given(line=request_lines, lines=header_lines)
def test_raw_request_gets_400_or_close_or_an_answer(server, line, lines):
    check_raw(server, b"\r\n".join([line, *lines]) + b"\r\n\r\n")
