"""Text encodings, hashes, identifiers and JSON inside strings.

    >>> base64_decode(base64_encode("café"))
    'café'
    >>> url_encode("a b/c?d=é")
    'a%20b%2Fc%3Fd%3D%C3%A9'
    >>> json_parse('{"ok": true}')
    {'ok': True}
    >>> uuid5_of("6ba7b811-9dad-11d1-80b4-00c04fd430c8", "https://hookline.dev")
    '9373aa25-e369-5101-89a9-86a68c6e7603'

Text is UTF-8 throughout: ``base64_encode`` and ``sha256`` encode it, and
``base64_decode``/``url_decode`` must give UTF-8 text (a JSON string cannot
hold bytes).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from urllib.parse import quote, unquote

import orjson

from .base import ArgError, Function, Param, simple

_TEXT = (Param("text", ("string",)),)


def base64_encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def base64_decode(text: str) -> str:
    """Standard or URL-safe alphabet; padding may be left out."""
    data = text.strip().translate(_URL_SAFE)
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ArgError(0, "is not valid base64") from None
    return _utf8(raw, "decodes to bytes that are not UTF-8 text")


_URL_SAFE = str.maketrans("-_", "+/")


def _utf8(raw: bytes, reason: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ArgError(0, reason) from None


def url_encode(text: str) -> str:
    """Percent-encode everything but RFC 3986's unreserved characters."""
    return quote(text, safe="")


def url_decode(text: str) -> str:
    """Undo percent-encoding (``+`` stays ``+``: form fields arrive decoded already)."""
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ArgError(0, "holds percent-escapes that are not UTF-8 text") from None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def json_parse(text: str):
    """Strict JSON, as request bodies are read: nesting over 1,024 levels is refused."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ArgError(0, f"is not JSON ({str(exc)[:120]})") from None


def json_encode(value) -> str:
    """Compact JSON text; integers over 64 bits are written exactly too."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (RecursionError, ValueError, TypeError):
        raise ArgError(0, "nests too deeply to be written as JSON") from None


def _namespace(index: int, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ArgError(index, "is not a UUID (like 6ba7b811-9dad-11d1-80b4-00c04fd430c8)") from None


def uuid5_of(namespace: str, name: str) -> str:
    return str(uuid.uuid5(_namespace(0, namespace), name))


def _prepare_uuid5(literals, env):
    known = literals[0] if isinstance(literals[0], str) else None
    if known is None:
        return uuid5_of
    fixed = _namespace(0, known)      # checked once, at load time
    return lambda namespace, name: str(uuid.uuid5(fixed if namespace == known else _namespace(0, namespace), name))


FUNCTIONS = (
    Function("base64_encode", _TEXT, simple(base64_encode)),
    Function("base64_decode", _TEXT, simple(base64_decode)),
    Function("url_encode", _TEXT, simple(url_encode)),
    Function("url_decode", _TEXT, simple(url_decode)),
    Function("sha256", _TEXT, simple(sha256)),
    Function("json_parse", _TEXT, simple(json_parse)),
    Function("json_encode", (Param("value"),), simple(json_encode), null_in=False),
    Function("uuid", (), simple(lambda: str(uuid.uuid4()))),
    Function("uuid5", (Param("namespace", ("string",)), Param("name", ("string",))), _prepare_uuid5),
)
