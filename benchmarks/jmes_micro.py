"""Micro-benchmark: jmespath's tree interpreter vs dsl.jmes closures.

Times ``jmespath.compile(e).search(order)`` and ``compile_expression(e).search(order)``
(both compiled once, outside the timing) on a Shopify ``orders/create`` payload,
interleaving the two in each round, and prints the median µs per call.

    .venv/bin/python benchmarks/jmes_micro.py [rounds]
"""
from __future__ import annotations

import json
import statistics
import sys
import timeit
from pathlib import Path

import jmespath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dsl.jmes import compile_expression  # noqa: E402

ORDER = Path("/work/shared/corpus/shopify/orders.create.json")
EXPRESSION = ("{order: id, customer: customer.email, "
              "lines: line_items[?quantity > `0`].{sku: sku, qty: quantity}, "
              "total: total_price}")
CALLS = 2000


def per_call_us(search, data) -> float:
    """Microseconds per call over one batch of CALLS calls."""
    return timeit.timeit(lambda: search(data), number=CALLS) / CALLS * 1e6


def main(rounds: int = 15) -> None:
    data = json.loads(ORDER.read_text())
    contenders = {
        "jmespath.compile(e).search": jmespath.compile(EXPRESSION).search,
        "compile_expression(e).search": compile_expression(EXPRESSION).search,
    }
    results = list(contenders.values())
    assert results[0](data) == results[1](data), "the two disagree"
    timings = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, search in contenders.items():
            timings[name].append(per_call_us(search, data))
    print(f"{ORDER.name} ({ORDER.stat().st_size} bytes), {rounds} rounds x {CALLS} calls")
    for name, samples in timings.items():
        print(f"  {name:30s} {statistics.median(samples):7.2f} µs/call (median)")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
