"""Trust at the edge (issue 5) over real HTTP: a ``hookline serve`` subprocess with
its secrets in the environment, ``requests`` (or a raw socket) as the client, and a
recording destination in a thread. The pipelines are tests/pipelines/security/:

    /sec/verify/<preset>      one per preset (github, stripe, shopify, slack, standard,
                              twilio, hmac); github and stripe call the recorder
    /sec/auth/<scheme>        bearer (two tokens), basic, header (X-Api-Key), query (api_key);
                              header-async, query-async: the same keys, plus an async branch
    /sec/ips/local|private    allow_ips 127.0.0.1/32 + ::1 | 10.0.0.0/8 + 2001:db8::/32
    /sec/rate/client|tenant   rate_limit per client (burst 3) | per X-Tenant (burst 2)
    /sec/open                 max_body_bytes 64, answers 204
    /sec/out/...              record/{name}, other (OTHER_URL: localhost), redirect/{to}
                              (follow_redirects 2), big/{mode} (max_response_bytes 1000)

Three servers: ``server`` (no flags), ``fronted`` (``--trusted-proxies 127.0.0.1/32
--allow-hosts 127.0.0.1,localhost``: a deployment behind a proxy), ``restricted``
(``--allow-hosts 127.0.0.1``). Requests are signed with the providers' libraries where
PyPI has one (stripe, slack_sdk, standardwebhooks, svix, twilio), as tests/test_verify.py
does; GitHub and Shopify publish none, so their HMAC is written out as documented.
Every response and the server log (the process's output, read as it comes) are
checked for the secrets and for the signed bodies.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.client import HTTPResponse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
import slack_sdk.signature
import standardwebhooks
import stripe
import svix
from twilio.request_validator import RequestValidator

import dsl
from conftest import ROOT, read_answer, start_hookline

PIPELINES = ROOT / "tests" / "pipelines" / "security"
PROBLEM_TYPE = "https://hookline.dev/problems/"
FORM = "application/x-www-form-urlencoded"
GITHUB_DOC_SECRET = "It's a Secret to Everybody"     # docs.github.com, "Testing the webhook payload validation"
GITHUB_DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
TWILIO_PUBLIC = "https://hooks.example.com"
MARKER = "hookline-body-" + secrets.token_hex(8)       # in every signed body; must never be logged


def whsec(raw: bytes) -> str:
    return "whsec_" + base64.b64encode(raw).decode()


SECRETS = {
    "SEC_GITHUB_SECRET": "gh-" + secrets.token_hex(16),
    "SEC_GITHUB_SECRET_OLD": GITHUB_DOC_SECRET,
    "SEC_STRIPE_SECRET": "whsec_" + secrets.token_hex(16),
    "SEC_SHOPIFY_SECRET": "shpss_" + secrets.token_hex(16),
    "SEC_SLACK_SECRET": secrets.token_hex(16),
    "SEC_STANDARD_SECRET": whsec(secrets.token_bytes(24)),
    "SEC_TWILIO_TOKEN": secrets.token_hex(16),
    "SEC_HMAC_SECRET": "erp-" + secrets.token_hex(16),
    "SEC_BEARER_TOKEN": "tok-" + secrets.token_hex(16),
    "SEC_BEARER_TOKEN_OLD": "tok-old-" + secrets.token_hex(16),
    "SEC_BASIC_PASSWORD": "pw-" + secrets.token_hex(16),
    "SEC_API_KEY": "key-" + secrets.token_hex(16),
    "SEC_DEST_TOKEN": "dest-" + secrets.token_hex(16),     # what a call step sends its destination
}
# What must never be shown or logged: each secret, and the decoded key of a whsec_ secret.
NEVER = [*SECRETS.values(), *(s.removeprefix("whsec_")[:16] for s in SECRETS.values() if s.startswith("whsec_"))]


# --- the recording destination ------------------------------------------------------------------

class Destination:
    """A loopback HTTP app: /record/... records and answers {n, path} (after 0.3 s for a path
    with ``/slow-``); /redirect/same|other|port|scheme answer 302 to this host, to
    ``localhost``, to this host on a second port it also listens on, or to this host over
    https; /big/length|chunked?size=N answer N bytes."""

    def __init__(self):
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.other = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.other.daemon_threads = True
        self.other_port = self.other.server_address[1]
        for server in (self.server, self.other):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.records if r["path"] == path)

    def _handler(self):
        dest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                if path.startswith("/record/"):
                    if "/slow-" in path:
                        time.sleep(0.3)
                    with dest.lock:
                        dest.records.append({"method": self.command, "path": path, "body": body,
                                             "host": self.headers.get("Host"),
                                             "authorization": self.headers.get("Authorization")})
                        n = sum(1 for r in dest.records if r["path"] == path)
                    return self._send(200, json.dumps({"n": n, "path": path}).encode())
                if path == "/redirect/same":
                    return self._send(302, b"", location="/record/redirected")
                if path == "/redirect/other":
                    return self._send(302, b"", location=f"http://localhost:{dest.port}/record/redirected")
                if path == "/redirect/port":     # the same host, another port: another origin
                    return self._send(302, b"", location=f"http://127.0.0.1:{dest.other_port}/record/redirected")
                if path == "/redirect/scheme":   # the same host and port over https: another origin
                    return self._send(302, b"", location=f"https://127.0.0.1:{dest.port}/record/redirected")
                if path.startswith("/big/"):
                    return self._big(path.rpartition("/")[2], int(dict(parse_qsl(query))["size"]))
                return self._send(404, b"{}")

            def _send(self, status, body, location=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _big(self, mode, size):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                if mode == "length":
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    self.wfile.write(b"a" * size)
                    return
                self.send_header("Transfer-Encoding", "chunked")    # the cap must count while reading
                self.end_headers()
                for start in range(0, size, 500):
                    piece = b"b" * min(500, size - start)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        return Handler

    def close(self):
        for server in (self.server, self.other):
            server.shutdown()
            server.server_close()


class ServerLog:
    """The server's output (its log), read without blocking as it arrives."""

    def __init__(self, proc):
        self.fd = proc.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.text = ""

    def read(self) -> str:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.text += chunk.decode("utf-8", "replace")
        return self.text


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def destination():
    dest = Destination()
    yield dest
    dest.close()


def _serve(destination, extra=()):
    env = {**SECRETS, "DEST_URL": destination.url, "OTHER_URL": f"http://localhost:{destination.port}"}
    proc = start_hookline([PIPELINES], env=env, extra=extra, tail=False)
    proc.log = ServerLog(proc)
    return proc


@pytest.fixture(scope="module")
def server(destination):
    proc = _serve(destination)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def fronted(destination):
    proc = _serve(destination, ("--trusted-proxies", "127.0.0.1/32", "--allow-hosts", "127.0.0.1,localhost"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def restricted(destination):
    proc = _serve(destination, ("--allow-hosts", "127.0.0.1"))
    yield proc
    proc.stop()


# --- helpers ------------------------------------------------------------------------------------

def assert_problem(resp, status: int, slug: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    doc = resp.json()
    assert doc["type"] == PROBLEM_TYPE + slug and doc["status"] == status, doc
    return doc


def assert_discreet(proc, *responses) -> None:
    """No secret in a response (status line aside) or in the log; no signed body in the log."""
    log = proc.log.read()
    for resp in responses:      # booleans, so that a failure does not print the secret itself
        shown = resp.text + "".join(f"{k}: {v}\n" for k, v in resp.headers.items())
        assert not any(secret in shown for secret in NEVER), "a secret reached a response"
    assert not any(secret in log for secret in NEVER), "a secret reached the server log"
    assert MARKER not in log, "a request body reached the server log"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


# --- signers: the providers' libraries where they exist -----------------------------------------

@dataclass(frozen=True)
class Signed:
    target: str          # path and query
    headers: dict
    body: bytes
    delivery: str = ""   # the delivery id the sender chose


def sign_github(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Signed("/sec/verify/github", {"X-Hub-Signature-256": sig, "X-GitHub-Event": "push",
                                         "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}, body)


def sign_stripe(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)
    return Signed("/sec/verify/stripe", {"Stripe-Signature": header, "Content-Type": "application/json"}, body)


def sign_shopify(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return Signed("/sec/verify/shopify", {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Topic": "orders/create",
                                          "X-Shopify-Webhook-Id": delivery, "Content-Type": "application/json"},
                  body)


def sign_slack(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    sig = slack_sdk.signature.SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
    return Signed("/sec/verify/slack", {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(ts),
                                        "Content-Type": FORM}, body)


def sign_standard(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    sig = standardwebhooks.Webhook(secret).sign(delivery, when, body.decode())
    return Signed("/sec/verify/standard", {"webhook-id": delivery, "webhook-timestamp": str(ts),
                                           "webhook-signature": sig, "Content-Type": "application/json"}, body)


def sign_svix(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    sig = svix.Webhook(secret).sign(delivery, when, body.decode())
    return Signed("/sec/verify/standard", {"svix-id": delivery, "svix-timestamp": str(ts),
                                           "svix-signature": sig, "Content-Type": "application/json"}, body)


def sign_twilio(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    target = "/sec/verify/twilio?tenant=7"
    sig = RequestValidator(secret).compute_signature(TWILIO_PUBLIC + target, dict(parse_qsl(body.decode())))
    return Signed(target, {"X-Twilio-Signature": sig, "I-Twilio-Idempotency-Token": delivery,
                           "Content-Type": FORM}, body)


def sign_hmac(secret: str, body: bytes, ts: int, delivery: str) -> Signed:
    target = "/sec/verify/hmac?site=3"
    message = b"\n".join([str(ts).encode(), b"POST", target.encode(), body])
    sig = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha512).digest()).decode()
    return Signed(target, {"X-Signature": "sha512=" + sig, "X-Timestamp": str(ts), "X-Request-Id": delivery,
                           "Content-Type": "application/json"}, body)


def json_body(delivery: str) -> bytes:
    return json.dumps({"id": delivery, "type": "order.paid", "note": MARKER}).encode()


def stripe_body(delivery: str) -> bytes:
    return json.dumps({"id": delivery, "object": "event", "type": "charge.succeeded", "note": MARKER}).encode()


def slack_body(delivery: str) -> bytes:
    return urlencode({"token": "xyz", "team_id": "T1", "command": "/deploy", "text": MARKER}).encode()


def twilio_body(delivery: str) -> bytes:
    return urlencode({"AccountSid": "AC" + "0" * 32, "From": "+14158675309", "To": "+18005551212",
                      "Body": MARKER}).encode()


@dataclass(frozen=True)
class Preset:
    name: str
    sign: Callable
    body: Callable           # delivery id → body (which holds MARKER)
    secret_env: str
    required: str            # the signature header
    expect: Callable         # delivery id → what the 200 body holds
    timestamped: bool = False
    wrong_secret: str = "not-the-secret-" + "0" * 8

    def signed(self, delivery=None, ts=None, secret=None) -> Signed:
        delivery = delivery or unique("evt" if self.name == "stripe" else "msg")
        ts = int(time.time()) if ts is None else ts
        signed = self.sign(secret or SECRETS[self.secret_env], self.body(delivery), ts, delivery)
        return replace(signed, delivery=delivery)

    def __str__(self):
        return self.name


PRESETS = [
    Preset("github", sign_github, json_body, "SEC_GITHUB_SECRET", "X-Hub-Signature-256",
           lambda d: {"verified": "github", "delivery": d, "seen": 1}),
    Preset("stripe", sign_stripe, stripe_body, "SEC_STRIPE_SECRET", "Stripe-Signature",
           lambda d: {"verified": "stripe", "event": d, "seen": 1}, True, "whsec_" + "1" * 32),
    Preset("shopify", sign_shopify, json_body, "SEC_SHOPIFY_SECRET", "X-Shopify-Hmac-Sha256",
           lambda d: {"verified": "shopify", "order": d}),
    Preset("slack", sign_slack, slack_body, "SEC_SLACK_SECRET", "X-Slack-Signature",
           lambda d: {"verified": "slack", "command": "/deploy"}, True),
    Preset("standard-webhooks", sign_standard, json_body, "SEC_STANDARD_SECRET", "webhook-signature",
           lambda d: {"verified": "standard-webhooks", "type": "order.paid", "seen": 1}, True, whsec(b"w" * 24)),
    Preset("svix", sign_svix, json_body, "SEC_STANDARD_SECRET", "svix-signature",
           lambda d: {"verified": "standard-webhooks", "type": "order.paid", "seen": 1}, True, whsec(b"s" * 24)),
    Preset("twilio", sign_twilio, twilio_body, "SEC_TWILIO_TOKEN", "X-Twilio-Signature",
           lambda d: {"verified": "twilio", "from": "+14158675309"}),
    Preset("hmac", sign_hmac, json_body, "SEC_HMAC_SECRET", "X-Signature",
           lambda d: {"verified": "hmac", "site": "3", "body": json.loads(json_body(d))}, True),
]
TIMED = [p for p in PRESETS if p.timestamped]


def send(proc, signed: Signed, **changes) -> requests.Response:
    signed = replace(signed, **changes)
    return requests.post(proc.url + signed.target, data=signed.body, headers=signed.headers, timeout=10)


def refused(proc, resp, reason: str) -> dict:
    doc = assert_problem(resp, 401, "bad-signature")
    assert doc["reason"] == reason, doc
    assert doc["title"] == "Signature check failed"
    assert_discreet(proc, resp)
    return doc


# --- receive.verify: every preset -----------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS, ids=str)
def test_a_correctly_signed_request_passes(server, preset):
    signed = preset.signed()
    resp = send(server, signed)
    assert resp.status_code == 200, resp.text
    assert resp.json() == preset.expect(signed.delivery)
    assert_discreet(server, resp)


@pytest.mark.parametrize("preset", PRESETS, ids=str)
def test_a_tampered_body_is_refused(server, preset):
    signed = preset.signed()
    tampered = signed.body.replace(MARKER.encode(), MARKER.upper().encode())
    assert tampered != signed.body
    refused(server, send(server, signed, body=tampered), "no-match")


@pytest.mark.parametrize("preset", PRESETS, ids=str)
def test_a_wrong_secret_is_refused(server, preset):
    doc = refused(server, send(server, preset.signed(secret=preset.wrong_secret)), "no-match")
    assert "configured secret" in doc["detail"]


@pytest.mark.parametrize("preset", PRESETS, ids=str)
def test_a_missing_signature_is_refused(server, preset):
    signed = preset.signed()
    headers = {k: v for k, v in signed.headers.items() if k.lower() != preset.required.lower()}
    doc = refused(server, send(server, signed, headers=headers), "missing-header")
    assert preset.required.lower() in doc["detail"].lower()


@pytest.mark.parametrize("preset", PRESETS, ids=str)
def test_a_malformed_signature_is_refused(server, preset):
    signed = preset.signed()
    headers = {**signed.headers, preset.required: "v9=" + "zz" * 40}
    refused(server, send(server, signed, headers=headers), "bad-format")


@pytest.mark.parametrize("skew", [-3600, 3600], ids=["stale", "future"])
@pytest.mark.parametrize("preset", TIMED, ids=str)
def test_a_stale_or_future_timestamp_is_refused(server, preset, skew):
    doc = refused(server, send(server, preset.signed(ts=int(time.time()) + skew)), "stale-timestamp")
    assert "300 s" in doc["detail"]


def test_refusals_are_logged_with_their_reason_only(server):
    resp = send(server, PRESETS[0].signed(secret="wrong"))
    refused(server, resp, "no-match")
    log = server.log.read()
    assert "pipeline sec-verify-github: signature refused: no-match" in log
    assert_discreet(server, resp)


def test_refusals_are_counted_per_pipeline_and_reason(server):
    counts = []
    for _ in range(2):
        refused(server, send(server, PRESETS[0].signed(secret="wrong")), "no-match")
        time.sleep(0.2)
        found = re.findall(r"sec-verify-github: signature refused: no-match \((\d+) so far\)", server.log.read())
        counts.append(int(found[-1]))
    assert counts[1] == counts[0] + 1


def test_githubs_documented_example_passes(server, destination):
    delivery = unique("doc")
    resp = requests.post(server.url + "/sec/verify/github", data=b"Hello, World!", timeout=10, headers={
        "Content-Type": "text/plain", "X-Hub-Signature-256": GITHUB_DOC_SIGNATURE, "X-GitHub-Delivery": delivery})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"verified": "github", "delivery": delivery, "seen": 1}
    recorded = [r for r in destination.records if r["path"] == f"/record/github/{delivery}"]
    assert [json.loads(r["body"]) for r in recorded] == ["Hello, World!"]
    bad = requests.post(server.url + "/sec/verify/github", data=b"Hello, World?", timeout=10, headers={
        "Content-Type": "text/plain", "X-Hub-Signature-256": GITHUB_DOC_SIGNATURE, "X-GitHub-Delivery": unique("d")})
    refused(server, bad, "no-match")


def test_rotation_accepts_each_configured_secret(server):
    github = PRESETS[0]
    for name in ("SEC_GITHUB_SECRET", "SEC_GITHUB_SECRET_OLD"):
        resp = send(server, github.signed(secret=SECRETS[name]))
        assert resp.status_code == 200, (name, resp.text)
    refused(server, send(server, github.signed(secret="gh-" + "9" * 32)), "no-match")


# --- replay protection ----------------------------------------------------------------------------

def test_a_replayed_github_delivery_gets_the_first_answer_and_runs_once(server, destination):
    delivery = unique("replay")
    signed = PRESETS[0].signed(delivery=delivery)
    first, second = send(server, signed), send(server, signed)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.content == first.content
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert first.json() == {"verified": "github", "delivery": delivery, "seen": 1}
    assert destination.count(f"/record/github/{delivery}") == 1


def test_a_forged_replay_is_refused_not_answered_from_the_store(server, destination):
    delivery = unique("forged")
    signed = PRESETS[0].signed(delivery=delivery)
    assert send(server, signed).status_code == 200
    forged = signed.body.replace(b"order.paid", b"order.void")
    refused(server, send(server, signed, body=forged), "no-match")
    assert destination.count(f"/record/github/{delivery}") == 1


def test_concurrent_copies_of_one_delivery_run_once(server, destination):
    # A captured delivery replayed in parallel must not run the steps once per copy.
    delivery = unique("slow")                    # the recorder answers /record/.../slow-* after 0.3 s
    signed = PRESETS[0].signed(delivery=delivery)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: send(server, signed), range(6)))
    assert {r.status_code for r in answers} == {200}
    assert {r.content for r in answers} == {answers[0].content}
    assert destination.count(f"/record/github/{delivery}") == 1


def test_a_svix_delivery_replayed_with_an_added_webhook_id_runs_once(server, destination):
    # The signature covers svix-id; an unsigned webhook-id added to a captured request must
    # not make it a new delivery (it did: the id was read from webhook-id first).
    svix_preset = next(p for p in PRESETS if p.name == "svix")
    signed = svix_preset.signed()
    first = send(server, signed)
    replayed = send(server, signed, headers={**signed.headers, "webhook-id": "x1"})
    assert first.status_code == replayed.status_code == 200, (first.text, replayed.text)
    assert replayed.content == first.content
    assert first.json() == svix_preset.expect(signed.delivery)
    assert destination.count(f"/record/standard/{signed.delivery}") == 1


def test_a_stripe_event_signed_again_still_runs_once(server, destination):
    # Stripe's delivery id is the event id in the (signed) body: a retry is signed afresh.
    stripe_preset = PRESETS[1]
    event = unique("evt")
    first = send(server, stripe_preset.signed(delivery=event, ts=int(time.time()) - 5))
    second = send(server, stripe_preset.signed(delivery=event))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"verified": "stripe", "event": event, "seen": 1}
    assert destination.count(f"/record/stripe/{event}") == 1


# --- receive.auth -----------------------------------------------------------------------------------

def bearer(token):
    return {"headers": {"Authorization": f"Bearer {token}"}}


AUTH = {
    # path: (accepted request kwargs, refused request kwargs, WWW-Authenticate or None)
    "bearer": ([bearer(SECRETS["SEC_BEARER_TOKEN"]), bearer(SECRETS["SEC_BEARER_TOKEN_OLD"])],
               [{}, bearer("tok-wrong"), bearer(""), {"headers": {"Authorization": SECRETS["SEC_BEARER_TOKEN"]}},
                {"auth": ("ops", SECRETS["SEC_BEARER_TOKEN"])}],
               'Bearer realm="sec-auth-bearer"'),
    "basic": ([{"auth": ("ops", SECRETS["SEC_BASIC_PASSWORD"])}],
              [{}, {"auth": ("ops", "wrong")}, {"auth": ("root", SECRETS["SEC_BASIC_PASSWORD"])},
               bearer(SECRETS["SEC_BASIC_PASSWORD"])],
              'Basic realm="sec-auth-basic"'),
    "header": ([{"headers": {"X-Api-Key": SECRETS["SEC_API_KEY"]}}],
               [{}, {"headers": {"X-Api-Key": "key-wrong"}}, {"params": {"api_key": SECRETS["SEC_API_KEY"]}},
                bearer(SECRETS["SEC_API_KEY"])],
               None),
    "query": ([{"params": {"api_key": SECRETS["SEC_API_KEY"]}}],
              [{}, {"params": {"api_key": "key-wrong"}}, {"headers": {"X-Api-Key": SECRETS["SEC_API_KEY"]}}],
              None),
}


@pytest.mark.parametrize("scheme", AUTH)
def test_auth_accepts_the_configured_credentials(server, scheme):
    for kwargs in AUTH[scheme][0]:
        resp = requests.post(f"{server.url}/sec/auth/{scheme}", timeout=10, **kwargs)
        assert resp.status_code == 200, (kwargs, resp.text)
        assert resp.json().endswith("ok")


@pytest.mark.parametrize("scheme", AUTH)
def test_auth_refuses_anything_else_with_401(server, scheme):
    challenge = AUTH[scheme][2]
    for kwargs in AUTH[scheme][1]:
        resp = requests.post(f"{server.url}/sec/auth/{scheme}", timeout=10, **kwargs)
        assert_problem(resp, 401, "unauthorized")
        assert resp.headers.get("WWW-Authenticate") == challenge, kwargs
        assert_discreet(server, resp)


@pytest.mark.parametrize("scheme, header", [
    ("bearer", "bearer " + SECRETS["SEC_BEARER_TOKEN"]),
    ("bearer", "BEARER " + SECRETS["SEC_BEARER_TOKEN"]),
    ("basic", "basic " + base64.b64encode(f"ops:{SECRETS['SEC_BASIC_PASSWORD']}".encode()).decode()),
], ids=["bearer", "BEARER", "basic"])
def test_the_auth_scheme_name_is_case_insensitive(server, scheme, header):
    # RFC 9110 section 11.1: "a case-insensitive token to identify the authentication scheme".
    resp = requests.post(f"{server.url}/sec/auth/{scheme}", headers={"Authorization": header}, timeout=10)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("where", ["header", "query"])
def test_credentials_are_not_persisted_for_async_branches(server, destination, where):
    # engine/durable.py keeps no credentials in a stored job ("credentials the sender used are
    # not kept"): the branch sees the persisted request, and forwards it to the recorder here.
    n = unique("p")
    key = SECRETS["SEC_API_KEY"]
    kwargs = {"headers": {"X-Api-Key": key}} if where == "header" else {"params": {"api_key": key}}
    resp = requests.post(f"{server.url}/sec/auth/{where}-async?n={n}", json={}, timeout=10,
                         **{**kwargs, "headers": {**kwargs.get("headers", {}), "Authorization": "Bearer other"}})
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 10
    while not destination.count(f"/record/persisted/{n}") and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = [r for r in destination.records if r["path"] == f"/record/persisted/{n}"]
    persisted = json.loads(record["body"])
    assert "authorization" not in persisted["headers"]
    kept = [name for name, value in {**persisted["headers"], **persisted["query"]}.items() if value == key]
    assert kept == [], "the API key was stored with the job (and shown to the branch)"


def test_auth_is_checked_before_the_body_is_parsed(server):
    resp = requests.post(f"{server.url}/sec/auth/bearer", data=b"{not json", timeout=10,
                         headers={"Content-Type": "application/json"})
    assert_problem(resp, 401, "unauthorized")


# --- receive.allow_ips and --trusted-proxies ----------------------------------------------------------

def post(proc, path, **headers):
    return requests.post(proc.url + path, headers=headers, timeout=10)


def test_allow_ips_lets_loopback_in_and_keeps_others_out(server):
    assert post(server, "/sec/ips/local").status_code == 200
    doc = assert_problem(post(server, "/sec/ips/private"), 403, "forbidden")
    assert "127.0.0.1" not in doc["detail"]


def test_without_trusted_proxies_forwarding_headers_are_ignored(server):
    assert_problem(post(server, "/sec/ips/private", **{"X-Forwarded-For": "10.1.2.3"}), 403, "forbidden")
    assert_problem(post(server, "/sec/ips/private", Forwarded="for=10.1.2.3"), 403, "forbidden")
    assert post(server, "/sec/ips/local", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 200


@pytest.mark.parametrize("headers, local, private", [
    ({}, 200, 403),                                                   # the proxy itself calls
    ({"X-Forwarded-For": "203.0.113.9"}, 403, 403),                   # a client outside both lists
    ({"X-Forwarded-For": "10.1.2.3"}, 403, 200),                      # a client inside 10.0.0.0/8
    ({"Forwarded": 'for="10.1.2.3:4711"'}, 403, 200),
    ({"X-Forwarded-For": "10.1.2.3, 203.0.113.9"}, 403, 403),         # a forged first hop is not believed
    ({"X-Forwarded-For": "203.0.113.9, 10.1.2.3, 127.0.0.1"}, 403, 200),   # nearest untrusted hop
    ({"X-Forwarded-For": "2001:db8:cafe::17"}, 403, 200),
    ({"Forwarded": 'for="[2001:db8:cafe::17]"'}, 403, 200),
    # RFC 7239 section 6's own example: an IPv6 address with a port, quoted.
    ({"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}, 403, 200),
], ids=["none", "outside", "inside", "forwarded", "forged-hop", "chain", "xff-ipv6", "forwarded-ipv6",
        "forwarded-ipv6-port"])
def test_behind_a_trusted_proxy_the_forwarded_client_is_checked(fronted, headers, local, private):
    assert post(fronted, "/sec/ips/local", **headers).status_code == local
    resp = post(fronted, "/sec/ips/private", **headers)
    assert resp.status_code == private
    if private == 403:
        assert_problem(resp, 403, "forbidden")


# --- receive.rate_limit -----------------------------------------------------------------------------

def assert_limited(resp) -> int:
    assert_problem(resp, 429, "rate-limited")
    wait = resp.headers["Retry-After"]
    assert wait.isdigit() and 1 <= int(wait) <= 5, wait
    return int(wait)


def test_a_burst_passes_then_429_with_retry_after(server):
    answers = [post(server, "/sec/rate/client") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert_limited(post(server, "/sec/rate/client"))
    assert_limited(post(server, "/sec/rate/client"))


def test_a_key_over_a_header_gives_each_value_its_own_bucket(server):
    for tenant in (unique("a"), unique("b")):
        codes = [post(server, "/sec/rate/tenant", **{"X-Tenant": tenant}).status_code for _ in range(2)]
        assert codes == [200, 200], tenant
        assert_limited(post(server, "/sec/rate/tenant", **{"X-Tenant": tenant}))


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(fronted):
    for client in ("10.9.0.1", "10.9.0.2"):
        codes = [post(fronted, "/sec/rate/client", **{"X-Forwarded-For": client}).status_code for _ in range(3)]
        assert codes == [200, 200, 200], client
        assert_limited(post(fronted, "/sec/rate/client", **{"X-Forwarded-For": client}))


# --- limits ---------------------------------------------------------------------------------------------

def connect(proc) -> socket.socket:
    parts = urlsplit(proc.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def raw_exchange(proc, request: bytes) -> HTTPResponse:
    sock = connect(proc)
    sock.sendall(request)
    resp = HTTPResponse(sock)
    resp.begin()
    resp.body = resp.read()
    sock.close()
    return resp


def with_fields(n: int) -> bytes:
    """A POST to /sec/open with exactly ``n`` header fields."""
    lines = ["POST /sec/open HTTP/1.1", "Host: x", "Content-Length: 0", "Connection: close"]
    lines += [f"X-Field-{i}: {i}" for i in range(n - 3)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_more_than_100_header_fields_get_431(server):
    assert raw_exchange(server, with_fields(100)).status == 204
    resp = raw_exchange(server, with_fields(101))
    assert resp.status == 431
    doc = json.loads(resp.body)
    assert doc["type"] == PROBLEM_TYPE + "too-many-headers" and "100" in doc["detail"]


def test_a_slow_client_does_not_block_other_requests(server):
    stalled = [connect(server) for _ in range(20)]
    for i, sock in enumerate(stalled):      # half stop inside the headers, half inside the body
        sock.sendall(b"POST /sec/open HTTP/1.1\r\nHost: x\r\nX-Slow: " if i % 2 else
                     b"POST /sec/open HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\":")
    try:
        start = time.monotonic()
        for _ in range(5):
            assert requests.post(server.url + "/sec/open", json={}, timeout=3).status_code == 204
        assert time.monotonic() - start < 3
        stalled[0].settimeout(0.2)
        with pytest.raises(socket.timeout):
            stalled[0].recv(1)               # still waiting for its headers: not answered, not closed
    finally:
        for sock in stalled:
            sock.close()


def test_headers_over_64_kib_are_refused_and_the_server_stays_up(server):
    sock = connect(server)
    sock.sendall(b"POST /sec/open HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n")
    answer = sock.recv(100)
    sock.close()
    assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer   # Tornado closes
    assert requests.post(server.url + "/sec/open", timeout=5).status_code == 204


def test_a_body_over_max_body_bytes_gets_413(server):
    assert_problem(requests.post(server.url + "/sec/open", data=b"x" * 65, timeout=10), 413, "body-too-large")
    chunked = requests.post(server.url + "/sec/open", data=iter([b"{", b" " * 100, b"}"]), timeout=10,
                            headers={"Content-Type": "application/json"})
    assert_problem(chunked, 413, "body-too-large")


def test_a_compressed_body_is_capped_after_decoding(server):
    small = gzip.compress(b" " * 200, mtime=0)           # 200 bytes decoded, fewer on the wire
    assert len(small) <= 64
    resp = requests.post(server.url + "/sec/open", data=small, timeout=10,
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    doc = assert_problem(resp, 413, "body-too-large")
    assert "decoded" in doc["detail"]
    fits = gzip.compress(b" " * 60 + b"{}", mtime=0)
    resp = requests.post(server.url + "/sec/open", data=fits, timeout=10,
                         headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status_code == 204, resp.text


# --- refusals before the body (docs/http.md, "Refusals before the body") ----------------------------

def head(path: str, length: int, *lines: str) -> bytes:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {length}", *lines, "", ""]).encode()


def closed(sock) -> bool:
    """The server closed the connection (EOF, or a reset for bytes it did not read)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_huge_content_length_gets_413_before_the_body_is_read(server):
    # 200 MB declared for a pipeline taking 64 bytes: Tornado's own limit (100 MB) answered a bare
    # 400 first; and a body over the 64 MiB discard limit was read in full before the 413.
    with connect(server) as sock:
        sock.sendall(head("/sec/open", 200_000_000, "Content-Type: application/json"))
        sock.sendall(b" " * 1_000_000)                   # 1 MB of the 200 MB, then wait for the answer
        answer = read_answer(sock.makefile("rb"))
        doc = answer.problem(413, "body-too-large")
        assert doc["max_body_bytes"] == 64 and answer.headers["connection"] == "close"
    # the same with nothing sent after the headers
    with connect(server) as sock:
        sock.sendall(head("/sec/open", 200_000_000))
        read_answer(sock.makefile("rb")).problem(413, "body-too-large")
        assert closed(sock)
    assert requests.post(server.url + "/sec/open", timeout=5).status_code == 204


def bucket_emptied(server) -> str:
    """An X-Tenant whose bucket (burst 2) is empty: its next request gets 429."""
    tenant = unique("t")
    for _ in range(2):
        assert post(server, "/sec/rate/tenant", **{"X-Tenant": tenant}).status_code == 200
    return tenant


def header_refusals(server) -> list:
    """(request head without the blank line's body, status, slug) for each refusal decided from headers."""
    return [
        (head("/sec/open", 1000), 413, "body-too-large"),
        (head("/sec/verify/github", 1000, "Content-Type: application/xml"), 415, "unsupported-media-type"),
        (head("/sec/ips/local", 1000).replace(b"POST", b"PUT", 1), 405, "method-not-allowed"),
        (head("/sec/nowhere", 1000), 404, "not-found"),
        (head("/sec/auth/bearer", 1000, "Authorization: Bearer tok-wrong"), 401, "unauthorized"),
        (head("/sec/ips/private", 1000), 403, "forbidden"),
        (head("/sec/rate/tenant", 1000, f"X-Tenant: {bucket_emptied(server)}"), 429, "rate-limited"),
    ]


def test_with_expect_100_continue_a_refusal_is_sent_instead_of_100(server):
    for request, status, slug in header_refusals(server):
        with connect(server) as sock:
            sock.sendall(request.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
            answer = read_answer(sock.makefile("rb"))       # no body sent: it must not wait for one
            answer.problem(status, slug)
            assert answer.headers["connection"] == "close", (slug, answer.headers)
            assert closed(sock), slug
    with connect(server) as sock:                        # accepted: 100 Continue, then the answer
        sock.sendall(head("/sec/open", 2, "Expect: 100-continue"))
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 (Continue)\r\n" and reader.readline() == b"\r\n"
        sock.sendall(b"{}")
        assert read_answer(reader).status == 204


def test_a_refusal_decided_from_headers_comes_before_the_body_and_the_connection_is_kept(server):
    # 401, 429, 413 (and every refusal decided from the headers) are answered while the body is
    # still coming; the rest of it is read and dropped, and the connection serves the next request.
    for request, status, slug in header_refusals(server):
        with connect(server) as sock:
            sock.sendall(request + b"x" * 100)            # 100 of the 1,000 bytes declared
            reader = sock.makefile("rb")
            read_answer(reader).problem(status, slug)
            sock.sendall(b"x" * 900)
            sock.sendall(b"GET /sec/open HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(reader).status == 204, slug


def test_a_chunked_body_over_the_limit_is_answered_before_it_ends(server):
    with connect(server) as sock:
        sock.sendall(b"POST /sec/open HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"64\r\n" + b" " * 100 + b"\r\n")       # over the 64 bytes allowed; no end yet
        reader = sock.makefile("rb")
        read_answer(reader).problem(413, "body-too-large")
        sock.sendall(b"0\r\n\r\nGET /sec/open HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(reader).status == 204


def test_a_half_closed_client_gets_the_answer_of_an_async_pipeline(server, destination):
    # The client sends its request, then shuts down its sending side (as `nc -N` does): the job
    # was stored but no answer was written, Tornado taking the end of input for a closed connection.
    n = unique("half")
    with connect(server) as sock:
        sock.sendall(f"POST /sec/auth/header-async?n={n} HTTP/1.1\r\nHost: x\r\n"
                     f"X-Api-Key: {SECRETS['SEC_API_KEY']}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock.makefile("rb"))
        assert answer.status == 202 and json.loads(answer.body)["id"], (answer.line, answer.body)
        assert answer.headers["connection"] == "close" and closed(sock)
    deadline = time.monotonic() + 10
    while destination.count(f"/record/persisted/{n}") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert destination.count(f"/record/persisted/{n}") == 1


# --- outbound: --allow-hosts, redirects, response size, templated URLs -----------------------------

def get(proc, path):
    return requests.get(proc.url + path, timeout=15)


def test_allow_hosts_refuses_a_destination_with_502(restricted, destination):
    before = destination.count("/record/other")
    doc = assert_problem(get(restricted, "/sec/out/other"), 502, "bad-gateway")
    assert "--allow-hosts" in doc["detail"] and "run_id" in doc
    assert destination.count("/record/other") == before
    assert get(restricted, "/sec/out/record/allowed").json()["status"] == 200


def test_without_allow_hosts_any_written_destination_is_called(server):
    resp = get(server, "/sec/out/other")
    assert resp.status_code == 200, resp.text
    assert resp.json()["body"]["path"] == "/record/other"


def last(destination, path) -> dict:
    return [r for r in destination.records if r["path"] == path][-1]


def test_a_redirect_to_the_same_host_is_followed_with_its_credentials(server, destination):
    resp = get(server, "/sec/out/redirect/same")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": 200, "body": {"n": resp.json()["body"]["n"], "path": "/record/redirected"}}
    hop = last(destination, "/record/redirected")
    assert hop["host"].startswith("127.0.0.1:") and hop["authorization"] == "Bearer " + SECRETS["SEC_DEST_TOKEN"]


@pytest.mark.parametrize("proc", ["server", "restricted"])
def test_a_redirect_to_another_host_is_refused_with_502(request, proc, destination):
    proc = request.getfixturevalue(proc)
    before = destination.count("/record/redirected")
    doc = assert_problem(get(proc, "/sec/out/redirect/other"), 502, "bad-gateway")
    assert "redirect to another host, port or scheme refused" in doc["detail"] or "not in --allow-hosts" in doc["detail"]
    assert destination.count("/record/redirected") == before


@pytest.mark.parametrize("to", ["port", "scheme"])
def test_a_redirect_to_the_same_host_on_another_port_or_scheme_is_refused(server, destination, to):
    """docs/security.md: redirects stay on the same scheme, host and port (or an allowed host)."""
    before = destination.count("/record/redirected")
    doc = assert_problem(get(server, f"/sec/out/redirect/{to}"), 502, "bad-gateway")
    assert "redirect to another host, port or scheme refused" in doc["detail"]
    assert destination.count("/record/redirected") == before


def test_a_redirect_to_a_host_in_allow_hosts_is_followed_without_credentials(fronted, destination):
    resp = get(fronted, "/sec/out/redirect/other")
    assert resp.status_code == 200, resp.text
    assert resp.json()["body"]["path"] == "/record/redirected"
    hop = last(destination, "/record/redirected")
    assert hop["host"].startswith("localhost:") and hop["authorization"] is None


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_a_response_above_max_response_bytes_gets_502(server, mode):
    assert get(server, f"/sec/out/big/{mode}?size=1000").json() == {"size": 1000}
    doc = assert_problem(get(server, f"/sec/out/big/{mode}?size=5000"), 502, "bad-gateway")
    assert "1000 bytes" in doc["detail"]


def test_a_request_value_fills_one_path_segment_percent_encoded(server, destination):
    resp = get(server, "/sec/out/record/a%2F..%2Fadmin%3Fx%3D1%23f")
    assert resp.status_code == 200, resp.text
    assert resp.json()["body"]["path"] == "/record/out/a%2F..%2Fadmin%3Fx%3D1%23f"


@pytest.mark.parametrize("value", ["%2E%2E", "%2E"])
def test_a_dot_segment_from_the_request_is_refused_with_422(server, destination, value):
    before = len(destination.records)
    assert_problem(get(server, f"/sec/out/record/{value}"), 422, "expression-failed")
    assert len(destination.records) == before


def test_a_url_whose_host_comes_from_the_request_does_not_compile():
    text = ("pipeline: ssrf\nreceive:\n  path: /ssrf\nsteps:\n  - id: c\n    call:\n"
            "      url: \"https://{request.body.host}/x\"\n")
    pipeline, problems = dsl.compile_text(text, "ssrf.yaml", env={})
    assert pipeline is None and [d.code for d in problems] == ["url-authority-from-request"]
