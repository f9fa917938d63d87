"""Webhook signature verification over the raw request bytes, before any parsing.

Compile once with :func:`make_verifier` (at load time; secrets decoded, options
checked), then call :meth:`Verifier.check` per request. It returns ``None`` or
raises :class:`VerifyError`; its ``detail`` is safe to show a client: it names
the check that failed, never an expected value or a secret.

    >>> v = make_verifier("github", ["It's a Secret to Everybody"])
    >>> sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    >>> v.check("POST", "/hooks/github", {"x-hub-signature-256": sig}, b"Hello, World!", now=0.0)
    >>> try:
    ...     v.check("POST", "/hooks/github", {"x-hub-signature-256": sig}, b"Hello, World?", now=0.0)
    ... except VerifyError as exc:
    ...     print(exc)
    no-match: X-Hub-Signature-256 does not match the request for any configured secret

Exception tree::

    VerifyError            check(): request refused; .reason ∈ REASONS, .detail (client-safe)
    ValueError
    └── VerifyConfigError  make_verifier(): bad preset/secrets/options; .problems = ((option, message), ...)

``check(method, url, headers, body, now)``: ``url`` is the request target as
received (``/path?query``, Tornado's ``start_line.path``) or an absolute URL;
``headers`` maps lower-case names to values (a list for a repeated header is
refused as bad-format); ``now`` is ``time.time()``.
Header values are turned back into bytes as Latin-1, the way Tornado decoded them.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Sequence
from urllib.parse import parse_qsl

import orjson

__all__ = ["make_verifier", "Verifier", "VerifyError", "VerifyConfigError", "PRESETS", "REASONS", "schema",
           "signature_headers"]

MISSING_HEADER, BAD_FORMAT = "missing-header", "bad-format"
STALE_TIMESTAMP, NO_MATCH = "stale-timestamp", "no-match"
REASONS = (MISSING_HEADER, BAD_FORMAT, STALE_TIMESTAMP, NO_MATCH)
DEFAULT_TOLERANCE_S = 300
MAX_TOLERANCE_S = 86_400
MAX_DELIVERY_ID = 256
_SIZES = MappingProxyType({"sha1": 20, "sha256": 32, "sha512": 64})
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")     # an HTTP header name (RFC 9110 token)
_PARTS = ("timestamp", "id", "method", "path", "body")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_AUTHORITY = re.compile(r"[^/?#]*")
_PUBLIC_URL = r"^https?://[^/?#\s]+(/[^?#\s]*)?$"


class VerifyError(Exception):
    """The request is refused: ``reason`` (one of REASONS) and ``detail`` (client-safe)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class VerifyConfigError(ValueError):
    """Bad ``verify:`` settings; ``problems`` pairs the option (``secrets[1]``) with a message."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{option}: {message}" for option, message in self.problems))


@dataclass(frozen=True, slots=True)
class _Signed:
    """What one request claims: candidate messages, candidate digests, its timestamp."""

    messages: tuple[bytes, ...]
    signatures: tuple[bytes, ...]
    timestamp: int | None = None
    label: str = ""               # names the timestamp in a stale-timestamp detail
    digest: str | None = None     # overrides the preset's hash (Twilio's signature settings)


@dataclass(frozen=True, slots=True)
class Verifier:
    """A compiled ``verify:`` block; frozen, shared by concurrent requests."""

    preset: str
    header: str                   # the signature header, as providers spell it
    tolerance_s: int | None
    _parse: Callable = field(repr=False)
    _delivery: Callable = field(repr=False)
    _keys: tuple[bytes, ...] = field(repr=False)
    _digest: str = field(repr=False)
    _opts: Mapping = field(repr=False)

    def check(self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Return if the request is signed by any configured secret, else raise VerifyError."""
        signed = self._parse(self, method, url, headers, body)
        if signed.timestamp is not None:
            _check_age(signed.timestamp, now, self.tolerance_s, signed.label)
        if not _matches(self._keys, signed.digest or self._digest, signed.messages, signed.signatures):
            raise VerifyError(NO_MATCH, f"{self.header} does not match the request for any configured secret")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The provider's id for this delivery (for replay protection), or None; call after check()."""
        value = self._delivery(self, headers, body)
        if not isinstance(value, str):
            return None
        value = value.strip()
        return value if 0 < len(value) <= MAX_DELIVERY_ID else None


# --- per-request helpers ------------------------------------------------------------------------

def _matches(keys, digest, messages, signatures) -> bool:
    # Every secret × message × signature is compared, without an early exit: the time taken
    # does not depend on which secret or which signature matched.
    found = False
    for key in keys:
        for message in messages:
            mac = hmac.digest(key, message, digest)
            for signature in signatures:
                found |= hmac.compare_digest(mac, signature)
    return found


def _check_age(timestamp: int, now: float, tolerance: int, label: str) -> None:
    age = now - timestamp
    if not abs(age) <= tolerance:       # written so that a NaN clock fails closed
        seconds = f"{abs(age):.0f} s" if abs(age) < 1e10 else "ages"
        when = f"{seconds} old" if age > 0 else f"{seconds} in the future"
        raise VerifyError(STALE_TIMESTAMP, f"{label} is {when}; the tolerance is {tolerance} s")


def _header(headers: Mapping[str, str], name: str, label: str) -> str:
    value = headers.get(name)
    if isinstance(value, (list, tuple)):     # a repeated header, as the request context keeps it
        raise VerifyError(BAD_FORMAT, f"the {label} header is repeated")
    if not isinstance(value, str) or not value.strip():
        raise VerifyError(MISSING_HEADER, f"the {label} header is missing")
    return value.strip()


def _raw(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _unprefix(value: str, prefix: str, label: str, shape: str) -> str:
    if not value.startswith(prefix):
        raise VerifyError(BAD_FORMAT, f"{label} must look like {shape}")
    return value[len(prefix):]


def _hex(text: str, size: int, label: str) -> bytes:
    try:
        if len(text) == 2 * size:
            return binascii.unhexlify(text)
    except ValueError:
        pass
    raise VerifyError(BAD_FORMAT, f"{label} must hold {2 * size} hex digits")


def _b64(text: str, size: int, label: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise VerifyError(BAD_FORMAT, f"{label} must hold a base64 {size}-byte digest")
    return raw


def _decode(text: str, size: int, encoding: str, label: str) -> bytes:
    return _hex(text, size, label) if encoding == "hex" else _b64(text, size, label)


def _timestamp(text: str, label: str) -> int:
    # Only ASCII digits: int() alone would take "١٢", " 12", "1_2" or 5,000 digits (ValueError).
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise VerifyError(BAD_FORMAT, f"{label} must be a Unix time in whole seconds")
    return int(text)


def _target(url: str) -> str:
    """``/path?query`` of ``url`` (origin-form passes through; the fragment is dropped)."""
    if _ABSOLUTE.match(url):
        tail = url.partition("://")[2]
        url = tail[len(_AUTHORITY.match(tail).group()):]
        url = url if url.startswith("/") else "/" + url
    return url.partition("#")[0]


# --- presets: one parse function each ------------------------------------------------------------

def _github(v, method, url, headers, body) -> _Signed:
    value = _header(headers, "x-hub-signature-256", v.header)
    hexdigest = _unprefix(value, "sha256=", v.header, "sha256=<64 hex digits>")
    return _Signed((body,), (_hex(hexdigest, 32, v.header),))


def _shopify(v, method, url, headers, body) -> _Signed:
    return _Signed((body,), (_b64(_header(headers, "x-shopify-hmac-sha256", v.header), 32, v.header),))


def _stripe(v, method, url, headers, body) -> _Signed:
    value = _header(headers, "stripe-signature", v.header)
    items = [item.strip().partition("=") for item in value.split(",")]
    stamps = [value for key, _, value in items if key == "t"]
    v1 = [value for key, _, value in items if key == "v1"]      # v0 and unknown schemes are ignored
    if len(stamps) != 1:
        raise VerifyError(BAD_FORMAT, f"{v.header} must hold exactly one t=<timestamp>")
    if not v1:
        raise VerifyError(BAD_FORMAT, f"{v.header} holds no v1= signature")
    ts = _timestamp(stamps[0], f"{v.header} t=")
    signatures = tuple(_hex(s, 32, f"{v.header} v1=") for s in v1)
    return _Signed((stamps[0].encode() + b"." + body,), signatures, ts, f"the {v.header} timestamp")


def _slack(v, method, url, headers, body) -> _Signed:
    value = _header(headers, "x-slack-signature", v.header)
    signature = _hex(_unprefix(value, "v0=", v.header, "v0=<64 hex digits>"), 32, v.header)
    label = "X-Slack-Request-Timestamp"
    text = _header(headers, "x-slack-request-timestamp", label)
    ts = _timestamp(text, label)
    return _Signed((b"v0:" + text.encode() + b":" + body,), (signature,), ts, f"the {label}")


def _standard(v, method, url, headers, body) -> _Signed:
    family = _standard_family(headers)
    if family is None:
        raise VerifyError(MISSING_HEADER, "the webhook-signature (or svix-signature) header is missing")
    value = _header(headers, family + "signature", family + "signature")
    msg_id = _header(headers, family + "id", family + "id")
    text = _header(headers, family + "timestamp", family + "timestamp")
    entries = [entry.partition(",") for entry in value.split(" ") if entry]
    v1 = [sig for version, _, sig in entries if version == "v1"]   # v1a (ed25519) etc. are skipped
    if not v1:
        raise VerifyError(BAD_FORMAT, f"{family}signature holds no v1,<base64> signature")
    signatures = tuple(_b64(sig, 32, f"{family}signature v1") for sig in v1)
    ts = _timestamp(text, family + "timestamp")
    message = _raw(msg_id) + b"." + text.encode() + b"." + body
    return _Signed((message,), signatures, ts, f"the {family}timestamp")


def _twilio(v, method, url, headers, body) -> _Signed:
    digest = _twilio_digest(headers.get("x-twilio-webhooks-signature-settings"))
    signature = _b64(_header(headers, "x-twilio-signature", v.header), _SIZES[digest], v.header)
    full = _twilio_url(v, url, headers)
    params = _twilio_params(method, full, headers, body)
    messages = tuple((u + params).encode("utf-8", "surrogatepass") for u in _port_variants(full))
    return _Signed(messages, (signature,), digest=digest)


def _twilio_digest(settings) -> str:
    # X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256 (Webhooks Rules);
    # absent, Twilio signs with HMAC-SHA1 (the Auth Token).
    for part in (settings or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip():
            digest = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}.get(value.strip().upper())
            if digest is None:
                raise VerifyError(BAD_FORMAT,
                                  "X-Twilio-Webhooks-Signature-Settings names an unsupported algorithm")
            return digest
    return "sha1"


def _twilio_url(v, url, headers) -> str:
    if v._opts["public_url"]:
        return v._opts["public_url"] + _target(url)
    if _ABSOLUTE.match(url):
        return url.partition("#")[0]
    return "https://" + _header(headers, "host", "Host") + _target(url)


def _port_variants(url: str) -> tuple[str, ...]:
    """``url`` and its twin with the default port added or removed (Twilio signs either)."""
    scheme, sep, tail = url.partition("://")
    if not sep:
        return (url,)
    netloc = _AUTHORITY.match(tail).group()
    rest = tail[len(netloc):]
    host, colon, port = netloc.rpartition(":")
    if colon and port.isascii() and port.isdigit():
        return url, f"{scheme}://{host}{rest}"
    default = "443" if scheme.lower() == "https" else "80"
    return url, f"{scheme}://{netloc}:{default}{rest}"


def _twilio_params(method, full, headers, body) -> str:
    """POST form parameters sorted by name, name+value concatenated; or a body-hash check."""
    query = dict(parse_qsl(full.partition("?")[2].partition("#")[0], keep_blank_values=True))
    if "bodySHA256" in query:
        # JSON bodies: the URL carries the body's SHA-256, and the URL is what is signed.
        actual = hashlib.sha256(body).hexdigest().encode()
        if not hmac.compare_digest(actual, _raw(query["bodySHA256"].lower())):
            raise VerifyError(NO_MATCH, "the body does not match the bodySHA256 query parameter")
        return ""
    content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if method == "POST" and content_type == "application/x-www-form-urlencoded":
        return _sorted_form(body)
    if body:
        raise VerifyError(BAD_FORMAT, "a body that is neither a POST form nor covered by bodySHA256 is not signed")
    return ""


def _sorted_form(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(BAD_FORMAT, "the form body is not UTF-8") from None
    values: dict[str, set] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def _hmac(v, method, url, headers, body) -> _Signed:
    o, labels = v._opts, v._opts["labels"]
    value = _unprefix(_header(headers, o["header"], v.header), o["prefix"], v.header, f"{o['prefix']}<signature>")
    signature = _decode(value, _SIZES[o["algorithm"]], o["encoding"], v.header)
    ts = text = None
    if o["timestamp_header"]:
        text = _header(headers, o["timestamp_header"], labels["timestamp"])
        ts = _timestamp(text, labels["timestamp"])
    parts = {"timestamp": lambda: text.encode(), "body": lambda: body, "method": lambda: _raw(method),
             "path": lambda: _raw(_target(url)), "id": lambda: _raw(_header(headers, o["id_header"], labels["id"]))}
    message = o["separator"].join(parts[name]() for name in o["signed"])
    return _Signed((message,), (signature,), ts, f"the {o['labels']['timestamp']}")


# --- delivery ids -------------------------------------------------------------------------------

def _header_id(name: str) -> Callable:
    return lambda v, headers, body: headers.get(name)


def _stripe_id(v, headers, body):
    # The event id lives in the JSON body; parsed only here, only when asked.
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return event.get("id") if isinstance(event, dict) else None


def _standard_family(headers) -> str | None:
    """``webhook-`` or ``svix-``: Svix sends the Standard Webhooks scheme as svix-id /
    svix-timestamp / svix-signature; the family of the signature header present is the
    one checked (webhook- when both are).

    >>> _standard_family({"svix-signature": "v1,x", "webhook-id": "x1"})
    'svix-'
    """
    return next((f for f in ("webhook-", "svix-") if f + "signature" in headers), None)


def _standard_id(v, headers, body):
    # The id of the family whose signature was checked: an unsigned webhook-id added to a
    # captured svix-* request must not make it a new delivery.
    family = _standard_family(headers)
    return None if family is None else headers.get(family + "id")


# --- compile time ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Preset:
    parse: Callable
    header: str
    digest: str
    options: tuple[str, ...]
    delivery: Callable
    decode_secret: Callable = str.encode


def _whsec(secret: str) -> bytes:
    text = secret.removeprefix("whsec_").rstrip("=")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _none(v, headers, body):
    return None


PRESETS = MappingProxyType({
    "github": _Preset(_github, "X-Hub-Signature-256", "sha256", (), _header_id("x-github-delivery")),
    "stripe": _Preset(_stripe, "Stripe-Signature", "sha256", ("tolerance_s",), _stripe_id),
    "shopify": _Preset(_shopify, "X-Shopify-Hmac-Sha256", "sha256", (), _header_id("x-shopify-webhook-id")),
    "slack": _Preset(_slack, "X-Slack-Signature", "sha256", ("tolerance_s",), _none),
    "standard-webhooks": _Preset(_standard, "webhook-signature", "sha256", ("tolerance_s",), _standard_id, _whsec),
    "twilio": _Preset(_twilio, "X-Twilio-Signature", "sha1", ("public_url",),
                      _header_id("i-twilio-idempotency-token")),
    "hmac": _Preset(_hmac, "", "sha256", ("header", "algorithm", "encoding", "prefix", "signed", "separator",
                                          "timestamp_header", "id_header", "tolerance_s"), _none),
})

def signature_headers() -> frozenset:
    """Every preset's signature header, lower-case (Standard Webhooks' svix- spelling too): the
    run history never records their values, whichever preset a pipeline uses.

        >>> sorted(signature_headers())[:2]
        ['stripe-signature', 'svix-signature']
    """
    return frozenset({p.header.lower() for p in PRESETS.values() if p.header} | {"svix-signature"})


_DEFAULTS = MappingProxyType({"algorithm": "sha256", "encoding": "hex", "prefix": "", "signed": ("body",),
                              "separator": ".", "timestamp_header": None, "id_header": None,
                              "public_url": None})


def make_verifier(preset: str, secrets: Sequence[str], **options) -> Verifier:
    """Compile a ``verify:`` block; raise VerifyConfigError listing every problem found.

        >>> make_verifier("stripe", ["whsec_x"], tolerance_s=600).tolerance_s
        600
    """
    spec = PRESETS.get(preset) if isinstance(preset, str) else None
    if spec is None:
        known = ", ".join(PRESETS)
        raise VerifyConfigError([("preset", f"unknown preset {str(preset)[:40]!r}; use one of {known}")])
    problems = []
    keys = _keys(spec, secrets, problems)
    problems += _option_problems(preset, spec, options)
    if problems:
        raise VerifyConfigError(problems)
    opts = {**_DEFAULTS, **options}
    return Verifier(preset=preset, header=spec.header or opts["header"], tolerance_s=_tolerance(preset, opts),
                    _parse=spec.parse, _delivery=_delivery(preset, spec, opts), _keys=keys,
                    _digest=opts["algorithm"] if preset == "hmac" else spec.digest,
                    _opts=MappingProxyType(_normalise(opts)))


def _keys(spec, secrets, problems: list) -> tuple[bytes, ...]:
    """The HMAC keys, decoded once; problems (never the secret itself) go to ``problems``."""
    if isinstance(secrets, (str, bytes)) or not isinstance(secrets, Sequence) or not secrets:
        problems.append(("secrets", "must be a list of one or more secrets (several while rotating)"))
        return ()
    keys = []
    for i, secret in enumerate(secrets):
        if not isinstance(secret, str) or not secret.strip():
            problems.append((f"secrets[{i}]", "must be a non-empty string (is the environment variable set?)"))
            continue
        try:
            keys.append(spec.decode_secret(secret))
        except ValueError:
            keys.append(b"")
        if not keys[-1]:
            problems.append((f"secrets[{i}]", "must be base64 (after an optional whsec_ prefix)"))
    return tuple(keys)


def _option_problems(preset, spec, options):
    for name in sorted(set(options) - set(spec.options)):
        allowed = ", ".join(spec.options) or "none"
        yield name, f"is not an option of preset {preset} (options: {allowed})"
    for name in sorted(set(options) & set(spec.options)):
        yield from ((name, message) for message in _CHECKS[name](options[name]))
    if preset == "hmac":
        yield from _hmac_problems(options)


def _hmac_problems(options):
    opts = {**_DEFAULTS, **options}
    if "header" not in options:
        yield "header", "is required by preset hmac: the header that carries the signature"
    signed = opts["signed"] if isinstance(opts["signed"], (list, tuple)) else ()
    for part, option in (("timestamp", "timestamp_header"), ("id", "id_header")):
        if part in signed and not opts[option]:
            yield "signed", f"lists {part} but {option} is not set"
    if opts["timestamp_header"] and "timestamp" not in signed:
        yield "timestamp_header", "is set but not signed: add timestamp to signed"
    if "tolerance_s" in options and not opts["timestamp_header"]:
        yield "tolerance_s", "needs timestamp_header (the timestamp it bounds)"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tolerance(value):
    if not _is_int(value) or not 1 <= value <= MAX_TOLERANCE_S:
        yield f"must be whole seconds from 1 to {MAX_TOLERANCE_S} (default {DEFAULT_TOLERANCE_S})"


def _check_header_name(value):
    if not isinstance(value, str) or not _TOKEN.match(value):
        yield "must be an HTTP header name, such as X-Signature"


def _check_enum(*allowed):
    def check(value):
        if value not in allowed:
            yield f"must be one of {', '.join(allowed)}"
    return check


def _check_text(value):
    if not isinstance(value, str):
        yield "must be a string"


def _check_signed(value):
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(p, str) for p in value):
        yield f"must be a list drawn from {', '.join(_PARTS)}"
        return
    if set(value) - set(_PARTS) or len(set(value)) != len(value):
        yield f"must list distinct parts drawn from {', '.join(_PARTS)}"
    if "body" not in value:
        yield "must include body (an unsigned body could be replaced)"


def _check_public_url(value):
    if not isinstance(value, str) or not re.match(_PUBLIC_URL, value):
        yield "must be the public base URL Twilio calls, such as https://hooks.example.com (no query)"


_CHECKS = MappingProxyType({
    "tolerance_s": _check_tolerance, "header": _check_header_name, "timestamp_header": _check_header_name,
    "id_header": _check_header_name, "algorithm": _check_enum(*_SIZES), "encoding": _check_enum("hex", "base64"),
    "prefix": _check_text, "separator": _check_text, "signed": _check_signed, "public_url": _check_public_url,
})


def _tolerance(preset, opts) -> int | None:
    if "tolerance_s" in PRESETS[preset].options and (preset != "hmac" or opts["timestamp_header"]):
        return opts.get("tolerance_s", DEFAULT_TOLERANCE_S)
    return None


def _normalise(opts) -> dict:
    out = dict(opts)
    out["labels"] = MappingProxyType({"timestamp": opts["timestamp_header"], "id": opts["id_header"]})
    for name in ("header", "timestamp_header", "id_header"):
        out[name] = out.get(name) and out[name].lower()
    out["separator"] = out["separator"].encode("utf-8")
    out["signed"] = tuple(out["signed"])
    out["public_url"] = out["public_url"] and out["public_url"].rstrip("/")
    return out


def _delivery(preset, spec, opts) -> Callable:
    if preset == "hmac" and opts["id_header"]:
        return _header_id(opts["id_header"].lower())
    return spec.delivery


def _option_schema() -> dict:
    tolerance = {"type": "integer", "minimum": 1, "maximum": MAX_TOLERANCE_S, "default": DEFAULT_TOLERANCE_S,
                 "description": "Largest accepted clock difference (past or future) of the signed timestamp."}
    header = {"type": "string", "pattern": _TOKEN.pattern}
    return {
        "tolerance_s": tolerance,
        "public_url": {"type": "string", "pattern": _PUBLIC_URL,
                       "description": "twilio: the scheme and host Twilio calls, when a proxy sits in front."},
        "header": {**header, "description": "hmac: the header that carries the signature."},
        "algorithm": {"enum": list(_SIZES), "default": "sha256"},
        "encoding": {"enum": ["hex", "base64"], "default": "hex"},
        "prefix": {"type": "string", "default": "", "description": "hmac: text before the signature, e.g. sha256="},
        "signed": {"type": "array", "items": {"enum": list(_PARTS)}, "uniqueItems": True, "minItems": 1,
                   "contains": {"const": "body"}, "default": ["body"],
                   "description": "hmac: what is signed, in order, joined by separator."},
        "separator": {"type": "string", "default": "."},
        "timestamp_header": {**header, "description": "hmac: header with the signed Unix time (seconds)."},
        "id_header": {**header, "description": "hmac: header with the delivery id."},
    }


def schema() -> dict:
    """A fresh draft-07 JSON Schema of the ``verify:`` block, from the same spec as make_verifier."""
    return {
        "type": "object", "required": ["preset", "secrets"],
        "properties": {"preset": {"enum": list(PRESETS)},
                       "secrets": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                       **_option_schema()},
        "allOf": [{"if": {"properties": {"preset": {"const": name}}},
                   "then": {"propertyNames": {"enum": ["preset", "secrets", *spec.options]},
                            **({"required": ["header"]} if name == "hmac" else {})}}
                  for name, spec in PRESETS.items()],
    }
