"""Async retries: when a job is retried, how long it waits, when it is given up on, and
which branches a request makes jobs for (``async[].when``).

The HTTP tests reuse test_async_delivery.py's recording destination and its
``hookline serve`` fixtures, with the pipelines of tests/pipelines/async-retries;
the tests of :class:`dsl.graph.Retry` pin its schedule without a server.
Waits are measured at the destination, from the end of one call to the
arrival of the next: the delivery worker looks for due jobs every 0.5 s, so a
wait may run over its bound by that much and some scheduling
(``SCHEDULING_TOLERANCE_S``); full jitter may make it ~0, so no lower bound
is asserted unless a Retry-After sets one.
"""
from __future__ import annotations

import math
import random
import time
from email.utils import formatdate

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from dsl.graph import Retry
from test_async_delivery import (  # noqa: F401  (fixtures, re-exported for pytest)
    ADMIN, dest, jobs, post, redis_store, servers, show, sqlite_store, state, store, wait_until)

PIPELINES = ROOT / "tests" / "pipelines" / "async-retries"
LIMIT, AGE, LATER, CAPPED, WHEN = (PIPELINES / f"{name}.yaml" for name in
                                   ("limit", "age", "later", "capped", "when"))
SCHEDULING_TOLERANCE_S = 1.5     # one lease poll (0.5 s) + a store write + a nice-19 delivery worker
                                 # on a 2-core machine busy with another xdist worker
FOREVER = (503,) * 50            # a destination that never recovers


def refused_until_dead(dest, server, store, path, rid) -> tuple[dict, list, float, float]:
    """Send ``rid`` to a destination answering 503 forever: its job once dead, the calls, and
    when (``time.monotonic()``) the POST was sent and answered (the job was stored in between)."""
    dest.plan(rid, *FOREVER)
    sent = time.monotonic()
    resp = post(server.url + path, rid)
    acked = time.monotonic()
    assert resp.status_code == 202, resp.text
    delivery = resp.json()["id"]
    wait_until(lambda: state(store, delivery) == "dead", 20, f"{rid} dead-lettered", poll=0.1)
    time.sleep(0.6)                      # one more lease poll: a dead job must not be called again
    (job,) = show(delivery, store)["jobs"]
    return job, sorted(dest.of(rid), key=lambda c: c.arrived), sent, acked


# delivery at the HTTP worker's priority: the waits measured here are the schedule's, not the
# scheduler's (at the default nice 19, a busy test machine delays delivery workers by seconds)
PROMPT = ("--delivery-nice", "0")

# --- 1. max_attempts over HTTP ---------------------------------------------------------------------

def test_a_job_refused_forever_is_dead_after_exactly_max_attempts_calls_with_one_key(dest, servers, store):
    server = servers([LIMIT], dest, store, extra=PROMPT)
    job, calls, _, _ = refused_until_dead(dest, server, store, "/r/limit", "lim-1")
    assert [c.status for c in calls] == [503, 503, 503]
    assert job["last_error"] == ("gave up after 3 attempts (max_attempts 3): "
                                 "step 'send': destination answered 503"), job
    assert job["attempt"] == 3, job
    assert [j["id"] for j in jobs(store, "dead")] == [job["id"]]
    assert {c.key for c in calls} == {f"{job['id']}.send"}
    retry = Retry(max_attempts=3, initial_s=0.3, max_s=0.5, max_age_s=600)     # limit.yaml's
    for n, (failed, next_call) in enumerate(zip(calls, calls[1:]), start=1):
        cap = min(retry.max_s, retry.initial_s * 2 ** (n - 1))
        waited = next_call.arrived - failed.finished
        assert waited <= cap + SCHEDULING_TOLERANCE_S, f"waited {waited:.2f} s after attempt {n} (cap {cap} s)"


# --- 2. max_age_s over HTTP ----------------------------------------------------------------------

def test_a_job_older_than_max_age_s_is_dead_before_max_attempts(dest, servers, store):
    server = servers([AGE], dest, store, extra=PROMPT)
    job, calls, sent, acked = refused_until_dead(dest, server, store, "/r/age", "age-1")
    max_age_s, max_attempts = 1.0, 20                                      # age.yaml's
    assert len(calls) < max_attempts, [c.status for c in calls]
    assert job["last_error"] == (f"gave up after {len(calls)} attempts: older than max_age_s (1 s): "
                                 "step 'send': destination answered 503"), job
    assert job["attempt"] == len(calls), job
    # dead at the first failure at least max_age_s after the job was stored, and not later:
    # it was stored between `sent` and `acked`, and each failure is noticed after the call finished
    assert calls[-1].finished - sent >= max_age_s - 0.5, f"dead {calls[-1].finished - sent:.2f} s after the POST"
    if len(calls) > 1:
        assert calls[-2].finished - acked < max_age_s, "retried although it was already too old"


# --- 3. dsl.graph.Retry --------------------------------------------------------------------------

positive = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False, allow_infinity=False)


anywhere = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None, database=None)
@given(initial_s=positive | anywhere, max_s=positive | anywhere, attempt=st.integers(1, 1000) | st.integers(1, 10**6),
       draw=st.floats(0, 1))
def test_next_delay_is_full_jitter_under_the_doubling_cap(initial_s, max_s, attempt, draw):
    retry = Retry(max_attempts=10**7, initial_s=initial_s, max_s=max_s, max_age_s=1e9)
    reaches_max = attempt - 1 + math.log2(initial_s) >= math.log2(max_s)      # in logs: no overflow here
    cap = max_s if reaches_max else math.ldexp(initial_s, attempt - 1)
    delay = retry.next_delay(attempt, lambda lo, hi: lo + (hi - lo) * draw)
    assert 0 <= delay <= cap
    assert delay == pytest.approx(draw * cap)          # the whole of [0, cap] is used, uniformly


def test_next_delay_with_the_real_random_stays_under_the_cap():
    retry, rng = Retry(12, 1, 3600, 86400), random.Random(7)
    delays = {n: [retry.next_delay(n, rng.uniform) for _ in range(200)] for n in range(1, 15)}
    for n, seen in delays.items():
        cap = min(3600, 2 ** (n - 1))
        assert all(0 <= d <= cap for d in seen), n
        assert max(seen) > cap * 0.9, f"attempt {n}: never waited near the cap {cap}"


def test_next_delay_after_1024_attempts_is_at_most_max_s():
    """max_attempts has no upper bound, so attempt 1100 can happen (a day at max_s 60);
    with a fractional initial_s, initial_s * 2**1099 does not fit in a float."""
    retry = Retry(max_attempts=2000, initial_s=0.5, max_s=60, max_age_s=1e9)
    assert 0 <= retry.next_delay(1100, random.uniform) <= 60
    tiny = Retry(max_attempts=10**6, initial_s=1e-300, max_s=1e300, max_age_s=1e9)     # far from max_s
    assert tiny.next_delay(1100, lambda lo, hi: hi) == pytest.approx(math.ldexp(1e-300, 1099))
    assert tiny.next_delay(10**6, lambda lo, hi: hi) == 1e300
    huge = Retry(max_attempts=5, initial_s=10**400, max_s=3, max_age_s=1e9)             # a YAML integer
    assert huge.next_delay(2, lambda lo, hi: hi) == 3


@settings(max_examples=200, deadline=None, database=None)
@given(max_attempts=st.integers(1, 100), max_age_s=positive)
def test_gives_up_at_max_attempts_and_at_max_age_s_not_one_before(max_attempts, max_age_s):
    retry = Retry(max_attempts=max_attempts, initial_s=1, max_s=10, max_age_s=max_age_s)
    young = 0.0
    assert [retry.gives_up(n, young) for n in range(1, max_attempts + 1)] == [False] * (max_attempts - 1) + [True]
    assert retry.gives_up(max_attempts + 1, young)
    if max_attempts > 1:
        assert not retry.gives_up(1, math.nextafter(max_age_s, 0))
        assert retry.gives_up(1, max_age_s)


def test_max_attempts_1_means_one_attempt_and_no_retry():
    assert Retry(max_attempts=1, initial_s=1, max_s=10, max_age_s=60).gives_up(1, 0.0)


# --- 4. Retry-After ------------------------------------------------------------------------------

def test_a_429_with_retry_after_as_an_http_date_waits_until_that_date(dest, servers, sqlite_store):
    server = servers([LATER], dest, sqlite_store, extra=PROMPT)
    target = math.ceil(time.time()) + 4                    # a whole second: HTTP dates have no fractions
    target_mono = time.monotonic() + (target - time.time())
    dest.plan("date-1", (429, formatdate(target, usegmt=True)))
    assert post(server.url + "/r/later", "date-1").status_code == 202
    wait_until(lambda: "date-1" in dest.delivered(), 15, "the retry after the 429")
    first, second = dest.of("date-1")
    assert (first.status, second.status) == (429, 200)
    assert target_mono - first.finished >= 2.0, "the 429 came too late for the test to tell anything"
    early = target_mono - second.arrived
    assert early <= 1.0, f"retried {early:.2f} s before the Retry-After date {formatdate(target, usegmt=True)}"
    assert second.arrived - target_mono <= 0.5 + SCHEDULING_TOLERANCE_S, "waited much longer than the date"
    assert first.key == second.key


def test_a_retry_after_longer_than_max_s_waits_max_s(dest, servers, sqlite_store):
    server = servers([CAPPED], dest, sqlite_store, extra=PROMPT)
    dest.plan("cap-1", (503, "30"))
    assert post(server.url + "/r/capped", "cap-1").status_code == 202
    wait_until(lambda: "cap-1" in dest.delivered(), 10, "the retry after the 503")
    first, second = dest.of("cap-1")
    waited = second.arrived - first.finished
    # capped.yaml: max_s 1, and initial_s 0.1 alone would have retried within 0.1 s
    assert 0.95 <= waited <= 1.0 + SCHEDULING_TOLERANCE_S, f"retried {waited:.2f} s after Retry-After: 30"


# --- 5. async[].when at runtime ------------------------------------------------------------------

def send_kind(server, rid, kind) -> requests.Response:
    return requests.post(server.url + "/r/when", json={"id": rid, "kind": kind}, timeout=30)


def test_when_picks_the_branches_and_a_request_matching_none_stores_nothing(dest, servers, store):
    server = servers([WHEN], dest, store, extra=("--admin-prefix", ADMIN[0]), env={"HOOKLINE_ADMIN_TOKEN": ADMIN[1]})
    none = send_kind(server, "w-none", "other")
    assert none.status_code == 202, none.text
    assert none.json() == {"id": None}
    assert "Location" not in none.headers, none.headers
    assert jobs(store) == []
    deliveries = {}
    for rid, kind in (("w-paid", "paid"), ("w-refunded", "refunded"), ("w-both", "both")):
        resp = send_kind(server, rid, kind)
        assert resp.status_code == 202, resp.text
        deliveries[rid] = resp.json()["id"]
        assert resp.headers["Location"] == f"{ADMIN[0]}/deliveries/{deliveries[rid]}"   # the admin is on
    wait_until(lambda: len(dest.delivered()) == 3 and len(dest.calls) == 4, 10, "four deliveries")
    stored = jobs(store)
    by_delivery = {d: sorted(j["branch"] for j in stored if j["delivery"] == d) for d in deliveries.values()}
    assert by_delivery == {deliveries["w-paid"]: ["ar-when/paid"], deliveries["w-refunded"]: ["ar-when/refunded"],
                           deliveries["w-both"]: ["ar-when/paid", "ar-when/refunded"]}
    assert len(stored) == 4, stored                       # and none for w-none
    branch_of_job = {j["id"]: j["branch"].split("/")[1] for j in stored}
    sent = sorted((c.rid, branch_of_job[c.key.partition(".")[0]], c.key.partition(".")[2]) for c in dest.calls)
    assert sent == [("w-both", "paid", "to_paid"), ("w-both", "refunded", "to_refunded"),
                    ("w-paid", "paid", "to_paid"), ("w-refunded", "refunded", "to_refunded")]
    assert "w-none" not in dest.ids()


def test_the_docstring_examples_of_retry_and_outage_hold():
    import doctest

    import dsl.graph
    import engine.durable
    for module in (dsl.graph, engine.durable):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0 and failed == 0, module.__name__
