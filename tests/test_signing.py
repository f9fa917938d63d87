"""dsl/signing.py: what ``request.sign`` in a test file adds is what the
pipeline's ``receive.verify`` accepts — for every preset — and what the
providers' own libraries accept (Stripe, Standard Webhooks)."""
from __future__ import annotations

import time

import pytest
import standardwebhooks
import stripe

from dsl.signing import sign
from dsl.verify import PRESETS, VerifyError, make_verifier

SECRET, OTHER = "whsec_c2VjcmV0LXNpZ25pbmcta2V5", "whsec_b3RoZXItc2lnbmluZy1rZXk="
CASES = {
    "github": {}, "shopify": {}, "stripe": {}, "slack": {}, "standard-webhooks": {}, "twilio": {},
    "hmac": {"header": "X-Signature"},
    "hmac-everything": {"header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "v1=",
                        "signed": ["id", "timestamp", "method", "path", "body"], "separator": ":",
                        "timestamp_header": "X-Timestamp", "id_header": "X-Delivery"},
}
FORM = {"host": "hooks.example.com", "content-type": "application/x-www-form-urlencoded"}


def request_for(preset):
    if preset == "twilio":
        return "/sms?x=1", FORM, b"From=%2B15551234567&Body=hi"
    return "/hooks/x?y=2", {"content-type": "application/json"}, b'{"id": "evt_1", "n": 1}'


def test_every_preset_has_a_case():
    assert set(PRESETS) <= {name.partition("-everything")[0] for name in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_signed_request_passes_the_check_and_a_wrong_secret_does_not(name):
    verifier = make_verifier(name.partition("-everything")[0], [SECRET], **CASES[name])
    target, headers, body = request_for(verifier.preset)
    now = time.time()
    signed = {**headers, **sign(verifier, SECRET, "POST", target, headers, body, now)}
    verifier.check("POST", target, signed, body, now)
    forged = {**headers, **sign(verifier, OTHER, "POST", target, headers, body, now)}
    with pytest.raises(VerifyError) as refused:
        verifier.check("POST", target, forged, body, now)
    assert refused.value.reason == "no-match"
    with pytest.raises(VerifyError):
        verifier.check("POST", target, signed, body + b" ", now)


def test_stripe_accepts_the_signature():
    payload = b'{"id": "evt_1", "object": "event"}'
    header = sign(make_verifier("stripe", [SECRET]), SECRET, "POST", "/", {}, payload, time.time())
    event = stripe.Webhook.construct_event(payload, header["stripe-signature"], SECRET)
    assert event["id"] == "evt_1"


def test_standard_webhooks_accepts_the_signature():
    payload = b'{"type": "invoice.paid"}'
    headers = sign(make_verifier("standard-webhooks", [SECRET]), SECRET, "POST", "/", {}, payload, time.time())
    assert standardwebhooks.Webhook(SECRET).verify(payload, headers) == {"type": "invoice.paid"}
