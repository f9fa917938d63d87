"""Sign a request the way a provider does, so that a compiled ``receive.verify``
accepts it: the inverse of :mod:`dsl.verify`, used by ``hookline test``
(``request.sign: {secret}``) and ``hookline run``.

    >>> from dsl.verify import make_verifier
    >>> v = make_verifier("github", ["It's a Secret to Everybody"])
    >>> sign(v, "It's a Secret to Everybody", "POST", "/hooks/github", {}, b"Hello, World!", now=0.0)
    {'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'}

``sign(verifier, secret, method, target, headers, body, now)`` returns the
headers to add (lower-case names); ``headers`` are the request's own
(lower-case names), read where the provider signs one of them (Twilio's
``Host``, an ``hmac`` preset's id header). ``secret`` is written as in the
pipeline's ``secrets`` (``whsec_…`` for standard-webhooks). Never used on the
request path.
"""
from __future__ import annotations

import base64
import hmac
import uuid
from typing import Callable, Mapping

from .verify import PRESETS, Verifier, _port_variants, _raw, _target, _twilio_params, _twilio_url

__all__ = ["sign"]


def sign(verifier: Verifier, secret: str, method: str, target: str, headers: Mapping[str, str],
         body: bytes, now: float) -> dict:
    """The signature headers ``verifier`` checks, for this request signed with ``secret``."""
    key = PRESETS[verifier.preset].decode_secret(secret)
    return _SIGNERS[verifier.preset](verifier, key, method, target, dict(headers), body, str(int(now)))


def _mac(key: bytes, message: bytes, digest: str = "sha256") -> bytes:
    return hmac.digest(key, message, digest)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _github(v, key, method, target, headers, body, ts):
    return {"x-hub-signature-256": "sha256=" + _mac(key, body).hex()}


def _shopify(v, key, method, target, headers, body, ts):
    return {"x-shopify-hmac-sha256": _b64(_mac(key, body))}


def _stripe(v, key, method, target, headers, body, ts):
    return {"stripe-signature": f"t={ts},v1={_mac(key, ts.encode() + b'.' + body).hex()}"}


def _slack(v, key, method, target, headers, body, ts):
    signature = _mac(key, b"v0:" + ts.encode() + b":" + body).hex()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": "v0=" + signature}


def _standard(v, key, method, target, headers, body, ts):
    msg_id = headers.get("webhook-id") or f"msg_{uuid.uuid4().hex}"
    signature = _b64(_mac(key, _raw(msg_id) + b"." + ts.encode() + b"." + body))
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": "v1," + signature}


def _twilio(v, key, method, target, headers, body, ts):
    full = _twilio_url(v, target, headers)
    params = _twilio_params(method, full, headers, body)
    message = (_port_variants(full)[0] + params).encode("utf-8", "surrogatepass")
    return {"x-twilio-signature": _b64(_mac(key, message, "sha1"))}


def _hmac(v, key, method, target, headers, body, ts):
    o = v._opts
    out = {}
    if o["timestamp_header"]:
        out[o["timestamp_header"]] = ts
    if o["id_header"] and not headers.get(o["id_header"]):
        out[o["id_header"]] = uuid.uuid4().hex
    seen = {**headers, **out}
    parts = {"timestamp": lambda: ts.encode(), "body": lambda: body, "method": lambda: _raw(method),
             "path": lambda: _raw(_target(target)), "id": lambda: _raw(seen[o["id_header"]])}
    raw = _mac(key, o["separator"].join(parts[name]() for name in o["signed"]), o["algorithm"])
    out[o["header"]] = o["prefix"] + (raw.hex() if o["encoding"] == "hex" else _b64(raw))
    return out


_SIGNERS: Mapping[str, Callable] = {
    "github": _github, "shopify": _shopify, "stripe": _stripe, "slack": _slack,
    "standard-webhooks": _standard, "twilio": _twilio, "hmac": _hmac,
}
