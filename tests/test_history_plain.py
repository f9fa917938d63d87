"""A run with nothing to redact is stored as a plain row (engine/history.py, ``_plain_row``:
the request's parts in one JSON array) and read back as the very record the full path
(``_run_row``) writes; a run with anything to redact, mask or cut out takes the full path."""
from __future__ import annotations

from types import SimpleNamespace

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.compiler import compile_text
from engine import history

PLAIN = """
pipeline: plain
receive:
  path: /plain
  history: {body_bytes: 64}
respond:
  status: 200
  body: request.body
"""

SECRET = PLAIN.replace("pipeline: plain", "pipeline: secret").replace(
    "  history: {body_bytes: 64}", "  auth:\n    bearer: ['${env:PLAIN_TOKEN}']\n  history: {body_bytes: 64}")


def pipeline(text=PLAIN, env=None):
    compiled, problems = compile_text(text, "/tmp/plain.yaml", env=env or {})
    assert compiled is not None, problems
    return compiled


def exchange(headers, raw, answer, error=None, trace=None):
    return SimpleNamespace(
        start=SimpleNamespace(method="POST", path="/plain?x=1"), lower=headers, headers=None, raw=raw,
        answer=answer, error=error, ctx=SimpleNamespace(trace=trace, steps={}), run_id="0123456789abcdef",
        delivery="d-1" if error else "")


def stored(row) -> dict:
    return history._unpacked(row[4:])


names = st.sampled_from(["content-type", "x-tag", "user-agent", "x-forwarded-for", "accept"])
values = st.text(min_size=0, max_size=20)
header_maps = st.dictionaries(names, st.one_of(values, st.lists(values, min_size=2, max_size=3)), max_size=5)
answers = st.one_of(st.none(), st.tuples(
    st.sampled_from([200, 201, 409, 422]), st.binary(max_size=100),
    st.one_of(st.none(), st.just("application/json")),
    st.lists(st.tuples(st.sampled_from(["Vary", "X-Id", "Location"]), values), max_size=3)))


@settings(max_examples=200, deadline=None)
@given(headers=header_maps, raw=st.binary(max_size=100), answer=answers, error=st.one_of(st.none(), values),
       seconds=st.floats(0, 5))
def test_a_plain_row_reads_back_as_the_full_record(headers, raw, answer, error, seconds):
    p = pipeline()
    ex = exchange(headers, raw, answer, error)
    status = answer[0] if answer else 200
    plain = history._plain_row(p, ex, 1796400000.25, status, seconds)
    full = history._run_row(p, ex, 1796400000.25, status, seconds)
    assert plain is not None and plain[4][:1] == b"["
    assert plain[:4] == full[:4] and plain[5:] == full[5:]
    assert stored(plain) == stored(full)
    summary = history._unpacked(plain[4:], bodies=False)
    assert summary == orjson.loads(full[4])


def test_runs_with_anything_to_redact_take_the_full_path():
    p, answer = pipeline(), (200, b"{}", "application/json", [])
    assert history._plain_row(p, exchange({"authorization": "Bearer abcdefgh"}, b"{}", answer), 1.0, 200, 0.1) is None
    assert history._plain_row(p, exchange({"cookie": "a=b"}, b"{}", answer), 1.0, 200, 0.1) is None
    cookie = (200, b"{}", None, [("Set-Cookie", "s=1")])
    assert history._plain_row(p, exchange({}, b"{}", cookie), 1.0, 200, 0.1) is None
    assert history._plain_row(p, exchange({}, b"{}", (502, b"{}", None, [])), 1.0, 502, 0.1) is None
    assert history._plain_row(p, exchange({}, b"{}", answer, trace=[("s", "transform", 0.1)]), 1.0, 200, 0.1) is None
    secret = pipeline(SECRET, {"PLAIN_TOKEN": "tok-abcdefgh"})
    assert history._plain_row(secret, exchange({}, b"{}", answer), 1.0, 200, 0.1) is None
    row = history._plain_row(p, exchange({"x-tag": "t"}, b"x" * 100, answer), 1.0, 200, 0.1)
    assert row is not None and row[5] == b"x" * 64 and stored(row)["body_truncated"] is True
