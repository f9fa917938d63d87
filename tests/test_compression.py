"""engine.compression: bounded decoding of request bodies, choosing and applying a response coding.

Pure and fast: no server. Bombs are built in milliseconds (a compressor restarted by
Z_FULL_FLUSH writes the same bytes for the same block, so one block's output is repeated)
and must be refused at max_bytes with memory that stays near max_bytes.
"""
from __future__ import annotations

import doctest
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.compression
from engine.compression import (CODINGS, MIN_COMPRESS_BYTES, Decoder, choose_encoding, compress,
                                decode_body)
from engine.formats import BodyError

brotli = engine.compression.brotli
needs_brotli = pytest.mark.skipif(brotli is None, reason="brotli (>= 1.2) is not installed")
SETTINGS = settings(max_examples=200, deadline=None)
MiB = 1 << 20
BODY = b'{"order": 1, "lines": [' + b", ".join(b'{"sku": "SKU-%d", "qty": %d}' % (i, i) for i in range(300)) + b"]}"


def gzip_bomb(compressed_size: int, wbits: int = 31) -> bytes:
    """About ``compressed_size`` bytes of gzip (or zlib/raw deflate) expanding ~1000 times; no trailer."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MiB)
    head = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(block) + c.flush(zlib.Z_FULL_FLUSH) == segment
    return head + segment * (compressed_size // len(segment))


def error_of(encoding, data, max_bytes=MiB) -> tuple[int, str]:
    with pytest.raises(BodyError) as info:
        decode_body(encoding, data, max_bytes)
    return info.value.status, info.value.slug


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_doctests():
    assert doctest.testmod(engine.compression).failed == 0


# --- decoding --------------------------------------------------------------------------------

ENCODED = {
    "gzip": zlib.compress(BODY, 6, wbits=31),
    "x-gzip": zlib.compress(BODY, 6, wbits=31),
    "GZIP": zlib.compress(BODY, 6, wbits=31),
    "deflate": zlib.compress(BODY),                       # zlib-wrapped, as RFC 9110 says
    "deflate ": zlib.compress(BODY, 9, wbits=-15),        # raw deflate, as some clients send
    "identity": BODY,
    "": BODY,
    "gzip, identity": zlib.compress(BODY, 6, wbits=31),
}


@pytest.mark.parametrize("encoding", list(ENCODED), ids=repr)
def test_decode_whole_and_streamed(encoding):
    data = ENCODED[encoding]
    assert decode_body(encoding, data, MiB) == BODY
    for size in (1, 2, 7, 1000):
        assert decode_body(encoding, chunks(data, size), MiB) == BODY


def test_streaming_decoder():
    decoder = Decoder("gzip", max_bytes=len(BODY))
    for chunk in chunks(ENCODED["gzip"], 100):
        decoder.feed(chunk)
    assert decoder.finish() == BODY and decoder.size == len(BODY)


def test_concatenated_gzip_members_are_one_body():
    data = zlib.compress(b"hello ", wbits=31) + zlib.compress(b"world", wbits=31)
    assert decode_body("gzip", data, 100) == b"hello world"
    assert decode_body("gzip", chunks(data, 3), 100) == b"hello world"


@needs_brotli
def test_brotli():
    data = compress(BODY, "br")
    assert decode_body("br", data, MiB) == BODY
    assert decode_body("br", chunks(data, 5), MiB) == BODY
    assert error_of("br", data[:-3]) == (400, "bad-encoding")
    assert error_of("br", data + b"x") == (400, "bad-encoding")


def test_empty_body_decodes_to_empty():
    assert decode_body("gzip", b"", 10) == b""
    assert decode_body("deflate", [], 10) == b""


@pytest.mark.parametrize("encoding, data", [
    ("gzip", b"not gzip at all"),
    ("gzip", ENCODED["gzip"][:-4]),                      # truncated trailer
    ("gzip", ENCODED["gzip"][:len(ENCODED["gzip"]) // 2]),
    ("gzip", ENCODED["gzip"] + b"\x00\x00"),             # trailing junk after the member
    ("gzip", ENCODED["gzip"][:10] + b"\xff" * 20),
    ("deflate", b"\x78\x9c\xff\xff\xff"),
    ("deflate", zlib.compress(BODY)[:-1]),
    ("deflate", zlib.compress(BODY) + b"x"),
    ("deflate", b"x"),                                   # one byte: not even a header
    ("deflate", zlib.compress(BODY, wbits=-15)[:20]),
])
def test_corrupt_data_is_400(encoding, data):
    assert error_of(encoding, data) == (400, "bad-encoding")


@pytest.mark.parametrize("encoding", ["compress", "zstd", "gzip, br", "deflate, gzip", "x-deflate", "*"]
                         + ([] if brotli else ["br"]))
def test_unknown_or_stacked_codings_are_415(encoding):
    with pytest.raises(BodyError) as info:
        Decoder(encoding, 100)
    err = info.value
    assert (err.status, err.slug) == (415, "unsupported-encoding")
    assert err.headers == (("Accept-Encoding", ", ".join(CODINGS)),)


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
def test_over_the_limit_is_413(encoding):
    data = compress(BODY, encoding) if encoding != "identity" else BODY
    assert decode_body(encoding, data, len(BODY)) == BODY
    assert error_of(encoding, data, len(BODY) - 1) == (413, "body-too-large")
    assert error_of(encoding, chunks(data, 50), len(BODY) - 1) == (413, "body-too-large")


@pytest.mark.parametrize("encoding, wbits", [("gzip", 31), ("deflate", 15), ("deflate", -15)])
def test_a_10_mb_bomb_is_refused_in_bounded_memory(encoding, wbits):
    bomb = gzip_bomb(10 * MiB, wbits)          # expands to ~10 GB
    assert len(bomb) >= 10 * 10 ** 6
    max_bytes = MiB
    tracemalloc.start()
    try:
        assert error_of(encoding, bomb, max_bytes) == (413, "body-too-large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * max_bytes
    assert peak < max_bytes + 512 * 1024          # the documented bound: max_bytes plus slices and state


def test_a_streamed_bomb_is_refused_in_bounded_memory():
    bomb = gzip_bomb(10 * MiB)
    decoder = Decoder("gzip", MiB)
    tracemalloc.start()
    try:
        with pytest.raises(BodyError) as info:
            for start in range(0, len(bomb), 256 * 1024):
                decoder.feed(bomb[start:start + 256 * 1024])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status == 413 and peak < 3 * MiB


@needs_brotli
def test_a_brotli_bomb_is_refused_in_bounded_memory():
    bomb = brotli.compress(bytes(256 * MiB), quality=1)
    tracemalloc.start()
    try:
        assert error_of("br", bomb, MiB) == (413, "body-too-large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MiB


# --- choosing a coding -----------------------------------------------------------------------

BR = "br" if brotli else "gzip"


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("", None),
    ("identity", None),
    ("gzip", "gzip"),
    ("GZip", "gzip"),
    ("x-gzip", "gzip"),
    ("deflate", "deflate"),
    ("deflate, gzip", "gzip"),                       # gzip wins ties
    ("gzip, deflate, br, zstd", "gzip"),             # what browsers send
    ("deflate;q=1.0, gzip;q=0.5", "deflate"),
    ("*", "gzip"),
    ("*;q=0", None),
    ("gzip;q=0, *", "br" if brotli else "deflate"),
    ("gzip;q=0, deflate;q=0", None),
    ("identity;q=0", None),                          # nothing else allowed: send identity anyway
    ("gzip;q=0.5, identity", None),                  # identity ranked higher
    ("gzip, identity;q=0.5", "gzip"),
    ("gzip;q=0.5", "gzip"),                          # identity unlisted: the fallback only
    ("*;q=0.3, identity;q=0.2", "gzip"),
    ("br", BR if brotli else None),
    ("br;q=1, gzip;q=0.9", BR),
    ("zstd, compress", None),
    ("gzip;q=1.5", None),                            # invalid q: that entry is ignored
    ("gzip;q=abc, deflate", "deflate"),
    ("gzip;q=0.8, gzip;q=0", "gzip"),                # the first mention counts
])
def test_choose_encoding(header, expected):
    assert choose_encoding(header) == expected


def test_long_headers_are_not_cached_but_still_work():
    header = ", ".join(f"x-{i};q=0.1" for i in range(100)) + ", deflate"
    assert len(header) > 512 and choose_encoding(header) == "deflate"


# --- compressing -----------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", CODINGS)
def test_compress_round_trips(encoding):
    data = compress(BODY, encoding)
    assert len(data) < len(BODY) // 3
    assert decode_body(encoding, data, len(BODY)) == BODY


def test_compress_formats():
    assert compress(BODY, "gzip")[:2] == b"\x1f\x8b"
    assert zlib.decompress(compress(BODY, "deflate")) == BODY          # zlib-wrapped
    assert compress(BODY, "gzip") == compress(BODY, "gzip")            # no timestamp: cacheable, testable
    with pytest.raises(KeyError):
        compress(BODY, "identity")


def test_min_compress_bytes():
    assert MIN_COMPRESS_BYTES == 1024


# --- properties ------------------------------------------------------------------------------

ENCODINGS = st.sampled_from(["gzip", "deflate", "identity", *(["br"] if brotli else [])])


@SETTINGS
@given(ENCODINGS, st.binary(max_size=300), st.integers(1, 64), st.integers(0, 400))
def test_decode_body_raises_only_body_error(encoding, data, chunk, max_bytes):
    try:
        out = decode_body(encoding, chunks(data, chunk), max_bytes)
    except BodyError as exc:
        assert exc.status in (400, 413)
    else:
        assert len(out) <= max_bytes


@SETTINGS
@given(ENCODINGS, st.binary(max_size=2000), st.integers(1, 300), st.integers(0, 40))
def test_decode_body_raises_only_body_error_on_damaged_streams(encoding, body, chunk, cut):
    data = compress(body, encoding) if encoding != "identity" else body
    data = data[:len(data) - cut] + data[len(data) - cut:][::-1]        # damage the tail
    try:
        decode_body(encoding, chunks(data, chunk), 4000)
    except BodyError as exc:
        assert exc.status == 400


@SETTINGS
@given(ENCODINGS.filter(lambda e: e != "identity"), st.binary(max_size=3000), st.integers(1, 500))
def test_compress_then_decode_round_trips(encoding, body, chunk):
    data = compress(body, encoding)
    assert decode_body(encoding, chunks(data, chunk), len(body)) == body
    if body:
        assert error_of(encoding, data, len(body) - 1) == (413, "body-too-large")


@SETTINGS
@given(st.text(max_size=80) | st.lists(st.sampled_from(["gzip", "br", "*", "identity", ";q=0", ";q=0.5", ",",
                                                         " ", "q=", ";", "deflate"]), max_size=12).map("".join))
def test_choose_encoding_never_raises(header):
    assert choose_encoding(header) in (*CODINGS, None)
