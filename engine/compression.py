"""Content codings: decode request bodies within a memory bound; choose and apply a response coding.

    >>> import zlib
    >>> decode_body("gzip", zlib.compress(b"hello", wbits=31), max_bytes=1024)
    b'hello'
    >>> choose_encoding("deflate, gzip;q=1.0, *;q=0.5")
    'gzip'
    >>> compress(b"x" * 2000, "gzip")[:2]
    b'\\x1f\\x8b'

Decoding never holds much more than ``max_bytes`` of output (plus ~200 KiB of slices and
decompressor state): input is fed to the decompressor in 64 KiB slices and each call may
produce at most 64 KiB and never more than the bytes still allowed, so a gzip bomb is
refused at ``max_bytes``, not after it expanded. (``finish()`` joins the parts: a body
that fits is briefly held twice.)

Errors are ``engine.formats.BodyError``: 413 body-too-large (decoded body over
``max_bytes``), 415 unsupported-encoding (its ``headers`` carry the ``Accept-Encoding``
to send, RFC 9110 §15.5.16), 400 bad-encoding (corrupt or truncated data).

Codings: ``gzip`` (also ``x-gzip``; concatenated members are read as one body),
``deflate`` (zlib-wrapped as RFC 9110 says, or raw deflate as some clients send; told
apart by the two-byte zlib header), ``identity``, and ``br`` when the ``brotli`` package is
importable. Stacked codings (``gzip, br``) are refused. An empty body decodes to ``b""``.
"""
from __future__ import annotations

import zlib
from functools import lru_cache
from types import MappingProxyType

from .formats import BodyError, q_value

try:
    import brotli
except ImportError:     # br is then neither decoded nor offered
    brotli = None
if brotli is not None and not hasattr(brotli.Decompressor, "can_accept_more_data"):
    brotli = None       # brotli < 1.2 cannot bound a decompression's output

__all__ = ["Decoder", "decode_body", "choose_encoding", "compress", "MIN_COMPRESS_BYTES", "CODINGS"]

MIN_COMPRESS_BYTES = 1024          # smaller bodies fit in a packet or two; compressing only costs
CODINGS = ("gzip", "br", "deflate") if brotli else ("gzip", "deflate")   # preference at equal q
GZIP_LEVEL = 3                     # zlib's fast strategy: ~1/3 of level 6's CPU, ~10 % larger (docs/http.md)
BROTLI_QUALITY = 4                 # br is sent only to clients that rank it above gzip
_SLICE = 64 * 1024
_ALIASES = MappingProxyType({"x-gzip": "gzip"})


class Decoder:
    """Streaming decoder for one request body: ``feed(chunk)`` while reading, then ``finish()``.

        >>> d = Decoder("deflate", max_bytes=100)
        >>> d.feed(zlib.compress(b"abc")); d.finish()
        b'abc'
    """

    __slots__ = ("coding", "max_bytes", "size", "parts", "_engine", "_head")

    def __init__(self, encoding: str | None, max_bytes: int):
        self.coding = _coding(encoding)
        self.max_bytes = max_bytes
        self.size = 0
        self.parts: list[bytes] = []
        self._engine = None
        self._head = b""           # deflate only: bytes held until the zlib header can be checked

    def feed(self, chunk: bytes) -> None:
        """Decode one chunk of the body (any size; decoded in 64 KiB slices)."""
        if self.coding == "identity":
            self._emit(chunk)
            return
        view = memoryview(chunk)
        for start in range(0, len(view), _SLICE):
            self._feed(view[start:start + _SLICE])

    def finish(self) -> bytes:
        """The decoded body; raises BodyError when the data stopped short."""
        if self.coding != "identity" and (self._engine is not None or self._head):
            if self._engine is None:
                self._feed(b"", force=True)
            self._guard(self._engine.finish, self._budget)
        parts = self.parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _feed(self, data, force: bool = False) -> None:
        if self._engine is None:
            data = self._head + bytes(data)
            if self.coding == "deflate" and len(data) < 2 and not force:
                self._head = data
                return
            self._head, self._engine = b"", _ENGINES[self.coding](data)
        self._guard(self._engine.feed, data, self._budget)

    def _guard(self, step, *args) -> None:
        try:
            for out in step(*args):
                self._emit(out)
        except _ERRORS as exc:
            raise BodyError(400, "bad-encoding", "Undecodable body",
                            f"the body is not valid {self.coding} data ({str(exc)[:100]})") from None

    def _budget(self) -> int:
        """What one decompress call may produce: 64 KiB at most (each call's output is
        copied once inside zlib), and one byte past the limit reveals excess."""
        return min(self.max_bytes - self.size + 1, _SLICE)

    def _emit(self, out: bytes) -> None:
        if not out:
            return
        self.size += len(out)
        if self.size > self.max_bytes:
            self.parts = []
            raise BodyError(413, "body-too-large", "Content Too Large",
                            f"the decoded request body is larger than {self.max_bytes} bytes")
        self.parts.append(bytes(out))


def decode_body(encoding: str | None, chunks_or_bytes, max_bytes: int) -> bytes:
    """Decode a whole body (bytes, or an iterable of chunks) under ``max_bytes``; raises BodyError."""
    decoder = Decoder(encoding, max_bytes)
    if isinstance(chunks_or_bytes, (bytes, bytearray, memoryview)):
        decoder.feed(chunks_or_bytes)
    else:
        for chunk in chunks_or_bytes:
            decoder.feed(chunk)
    return decoder.finish()


def _coding(encoding: str | None) -> str:
    """``"x-gzip"`` → ``"gzip"``; ``None``, ``""`` and ``"identity"`` → ``"identity"``; else 415."""
    codings = [c for c in (p.strip().lower() for p in (encoding or "").split(",")) if c not in ("", "identity")]
    if not codings:
        return "identity"
    coding = _ALIASES.get(codings[0], codings[0])
    if len(codings) == 1 and coding in _ENGINES:
        return coding
    raise BodyError(415, "unsupported-encoding", "Unsupported Content-Encoding",
                    f"cannot decode Content-Encoding {encoding[:60]!r}; use one of {', '.join(CODINGS)}",
                    headers=(("Accept-Encoding", ", ".join(CODINGS)),))


class _Zlib:
    """gzip (members in sequence) or deflate (zlib-wrapped or raw), bounded by a budget."""

    __slots__ = ("wbits", "z")

    def __init__(self, wbits: int):
        self.wbits, self.z = wbits, zlib.decompressobj(wbits)

    def feed(self, data, budget):
        while data:
            z = self.z
            if z.eof:
                if self.wbits != 31:
                    raise zlib.error("data after the end of the stream")
                self.z = z = zlib.decompressobj(31)
            yield z.decompress(data, budget())
            while z.unconsumed_tail:
                yield z.decompress(z.unconsumed_tail, budget())
            data = z.unused_data

    def finish(self, budget):
        yield self.z.flush(budget())
        if not self.z.eof:
            raise zlib.error("the stream is truncated")


class _Brotli:
    __slots__ = ("d",)

    def __init__(self):
        self.d = brotli.Decompressor()

    def feed(self, data, budget):
        if self.d.is_finished():
            raise brotli.error("data after the end of the stream")
        yield self.d.process(bytes(data), output_buffer_limit=budget())
        while not self.d.can_accept_more_data():
            yield self.d.process(b"", output_buffer_limit=budget())

    def finish(self, budget):
        if not self.d.is_finished():
            raise brotli.error("the stream is truncated")
        return ()


def _deflate(head: bytes) -> _Zlib:
    """RFC 1950 header (CM 8, window ≤ 32 KiB, check bits) → zlib-wrapped; otherwise raw."""
    if len(head) < 2:
        return _Zlib(-15)
    cmf, flg = head[0], head[1]
    wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0
    return _Zlib(15 if wrapped else -15)


_ENGINES = {"gzip": lambda head: _Zlib(31), "deflate": _deflate}
_ERRORS: tuple = (zlib.error,)
if brotli is not None:
    _ENGINES["br"] = lambda head: _Brotli()
    _ERRORS = (zlib.error, brotli.error)
_ENGINES = MappingProxyType(_ENGINES)


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The coding to compress a response with, or None for identity.

    No header or an empty one means identity. Codings are ranked by q (``*`` covers those
    not named), ties by CODINGS order; identity wins only when its own (or ``*``'s) q is
    higher. When the client refuses identity and every coding, the answer is still None:
    the response goes out uncompressed rather than as 406.

        >>> choose_encoding("gzip;q=0.5, identity")
    """
    if not accept_encoding:
        return None
    if len(accept_encoding) > 512:
        return _choose.__wrapped__(accept_encoding)
    return _choose(accept_encoding)


@lru_cache(maxsize=256)
def _choose(header: str) -> str | None:
    weights = _weights(header)
    star = weights.get("*")
    best, best_q = None, 0.0
    for coding in CODINGS:
        q = weights.get(coding, weights.get("x-gzip") if coding == "gzip" else None)
        q = star if q is None else q
        if q is not None and q > best_q:
            best, best_q = coding, q
    identity = weights.get("identity", star)
    return None if identity is not None and identity > best_q else best


def _weights(header: str) -> dict[str, float]:
    """``"gzip;q=0.8, br"`` → ``{"gzip": 0.8, "br": 1.0}`` (the first mention of a coding counts)."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        q = q_value(params)
        if name and q is not None:
            out.setdefault(name, q)
    return out


def compress(body: bytes, encoding: str) -> bytes:
    """``body`` in a coding from choose_encoding (gzip, deflate as zlib-wrapped, br)."""
    return _COMPRESSORS[encoding](body)


_COMPRESSORS = {"gzip": lambda body: zlib.compress(body, GZIP_LEVEL, wbits=31),
                "deflate": lambda body: zlib.compress(body, GZIP_LEVEL)}
if brotli is not None:
    _COMPRESSORS["br"] = lambda body: brotli.compress(body, quality=BROTLI_QUALITY)
_COMPRESSORS = MappingProxyType(_COMPRESSORS)
