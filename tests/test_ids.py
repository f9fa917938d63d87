"""Delivery and job ids (engine.durable.new_id): unique, time-ordered, never shared by forked workers."""
from __future__ import annotations

import os
import re

from engine.durable import new_id


def test_ids_are_32_hex_unique_and_sorted_by_time():
    ids = [new_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


def test_a_forked_worker_does_not_reuse_its_parents_random_bits():
    new_id()                                   # the parent has bits buffered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                               # the child writes its next 50 ids' random parts
        os.write(write, "".join(new_id()[12:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 10_000).decode()
    os.close(read)
    parent = "".join(new_id()[12:] for _ in range(50))
    assert len(child) == len(parent) == 1000
    random_parts = {text[i:i + 20] for text in (child,) for i in range(0, 1000, 20)}
    assert random_parts.isdisjoint(parent[i:i + 20] for i in range(0, 1000, 20)), \
        "the child reused random bits its parent had buffered"
