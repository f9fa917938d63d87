"""Each pipeline's runs wait for the flush in a ring of its last ``keep`` (engine/history.py,
``Recorder.add``): a run pushed out of it was past the bound already and is never written,
and not counted as dropped; the rows waiting in all the rings stay under ``max_buffer``
(half of it wakes the flush; all of it drops the pipeline's oldest, counted). The batches
go to a store stand-in that keeps them: what the recorder hands the store is what is checked.
tests/test_history.py checks the same bounds end to end, over HTTP, in the real stores."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson

from engine import history

from test_history_plain import exchange, pipeline

ANSWER = (200, b"{}", "application/json", [])


def ring_pipeline(name: str, keep: int):
    return pipeline(f"""
pipeline: {name}
receive:
  path: /{name}
  history: {{keep: {keep}, body_bytes: 64}}
respond:
  status: 200
  body: request.body
""")


class Kept:
    """The store's side of the recorder: every batch handed to it."""

    def __init__(self):
        self.batches = []

    async def record_runs(self, batch):
        self.batches.append(batch)


class Clock:
    def __init__(self, now=1_796_400_000.0):
        self.now = now

    def __call__(self):
        return self.now


def run(recorder, p, n: int, seconds=0.01, clock=None):
    ex = exchange({"x-tag": f"t{n}"}, b'{"n": %d}' % n, ANSWER)
    ex.pipeline, ex.run_id = p, f"run-{n}"
    if clock is not None:
        clock.now += 1.0
    recorder.add(ex, 200, seconds)


def written(store) -> list[str]:
    return [row[0] for batch in store.batches for row in batch.runs]


def flush(recorder):
    asyncio.run(recorder.flush())


def test_only_the_last_keep_runs_between_two_flushes_are_written_and_none_counted_dropped():
    store, p = Kept(), ring_pipeline("ring", keep=3)
    recorder = history.Recorder(store, max_buffer=100)
    for n in range(10):
        run(recorder, p, n)
    assert recorder.waiting == 3
    flush(recorder)
    assert written(store) == ["run-7", "run-8", "run-9"]
    assert recorder.dropped == 0
    assert store.batches[0].bounds[0][:2] == ("ring", 3)
    for n in range(10, 12):                    # the next flush: the runs since, all of them
        run(recorder, p, n)
    flush(recorder)
    assert written(store)[3:] == ["run-10", "run-11"]


def test_a_row_is_stored_under_the_time_its_run_finished_and_its_record_says_when_it_began():
    store, p, clock = Kept(), ring_pipeline("ring", keep=3), Clock()
    recorder = history.Recorder(store, clock=clock)
    run(recorder, p, 1, seconds=0.25, clock=clock)
    flush(recorder)
    row = store.batches[0].runs[0]
    assert row[2] == clock.now
    record = history._unpacked(tuple(row[4:]))
    assert record["at"] == clock.now - 0.25 and record["duration_ms"] == 250.0


def test_a_keep_larger_than_the_buffer_wakes_the_flush_at_half_and_counts_what_it_drops():
    store, p = Kept(), ring_pipeline("big", keep=50)
    recorder = history.Recorder(store, max_buffer=4)
    for n in range(2):
        run(recorder, p, n)
    assert recorder.wake.is_set()              # half of max_buffer waits: flush now
    for n in range(2, 6):                      # ... but the store is slow: two more than fit
        run(recorder, p, n)
    assert recorder.dropped == 2
    flush(recorder)
    assert written(store) == ["run-2", "run-3", "run-4", "run-5"]


def test_all_the_rings_together_hold_at_most_max_buffer_rows():
    store, a, b = Kept(), ring_pipeline("a", keep=3), ring_pipeline("b", keep=3)
    recorder = history.Recorder(store, max_buffer=4)
    for n in range(3):
        run(recorder, a, n)
    run(recorder, b, 10)
    run(recorder, b, 11)                       # 4 wait: b's oldest goes, counted
    assert recorder.waiting == 4 and recorder.dropped == 1
    run(recorder, a, 3)                        # a's ring is full: its oldest was past keep, not counted
    assert recorder.waiting == 4 and recorder.dropped == 1
    flush(recorder)
    assert sorted(written(store)) == ["run-1", "run-11", "run-2", "run-3"]


def reloaded(old_keep: int, new_keep: int, max_buffer: int):
    """A store, a recorder and two versions of one pipeline, before and after a reload."""
    store = Kept()
    return (store, history.Recorder(store, max_buffer=max_buffer), ring_pipeline("ring", keep=old_keep),
            ring_pipeline("ring", keep=new_keep))


def test_a_reload_that_lowers_keep_loses_no_run_before_the_flush_and_bounds_it_after():
    store, recorder, old, new = reloaded(5, 2, max_buffer=100)
    for n in range(4):
        run(recorder, old, n)
    run(recorder, new, 4)
    assert recorder.waiting == 5 and recorder.dropped == 0
    flush(recorder)
    assert written(store) == ["run-0", "run-1", "run-2", "run-3", "run-4"]
    assert store.batches[0].bounds[0][:2] == ("ring", 2)        # the store keeps the newest 2
    assert orjson.loads(store.batches[0].runs[4][4])[1] == "run-4"
    for n in range(5, 10):                     # after the flush, the new keep alone
        run(recorder, new, n)
    flush(recorder)
    assert written(store)[5:] == ["run-8", "run-9"]


def test_a_request_begun_before_a_reload_that_raised_keep_pushes_out_no_run_of_the_new_version():
    store, recorder, old, new = reloaded(5, 100, max_buffer=1000)
    for n in range(50):
        run(recorder, new, n)
    run(recorder, old, 999)                    # in flight across the reload: ends with the old version
    run(recorder, new, 50)
    assert recorder.dropped == 0 and recorder.waiting == 52
    flush(recorder)
    assert written(store) == [f"run-{n}" for n in range(50)] + ["run-999", "run-50"]


def test_each_flush_starts_the_count_of_runs_waiting_again():
    store, p = Kept(), ring_pipeline("ring", keep=3)
    recorder = history.Recorder(store, max_buffer=4)
    for round_ in range(5):                    # 3 runs a flush, max_buffer 4: never full
        for n in range(3):
            run(recorder, p, 10 * round_ + n)
        flush(recorder)
    assert recorder.dropped == 0
    assert len(written(store)) == 15


def test_a_ring_that_could_not_push_a_run_out_before_the_flush_wakes_it_once_128_wait():
    store = Kept()
    recorder = history.Recorder(store)                       # max_buffer 5000: half is 2500
    large, default = ring_pipeline("large", keep=2500), ring_pipeline("default", keep=1000)
    for n in range(300):                                     # the default keep: a flush a second
        run(recorder, default, n)
    assert not recorder.wake.is_set()
    for n in range(127):
        run(recorder, large, 1000 + n)
    assert not recorder.wake.is_set()
    run(recorder, large, 2000)
    assert recorder.wake.is_set()
