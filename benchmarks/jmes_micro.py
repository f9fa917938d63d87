"""Micro-benchmark: Hookline's compiled expressions vs the reference interpreters.

Times, on a Shopify ``orders/create`` payload, each expression below compiled
once (outside the timing) by

* ``hookline``: ``dsl.jmes.compile_expression(e).search``;
* ``jmespath``: jmespath.py's ``jmespath.compile(e).search`` (standard
  JMESPath, so only the ``reshape`` case, which it can parse);
* ``community``: the ``jmespath-community`` package (the Community Edition's
  Python reference), ``jmespath.compile(e).search``.

``jmespath-community`` installs a module named ``jmespath`` too, so it lives in
its own directory (``.bench-ce/``, git-ignored; installed there with pip when
missing) and runs in a worker subprocess that imports it from there. The main
process interleaves the contenders: in each round, each case is timed here and
then in the worker, so both see the same machine load. It checks that all give
the same result, and prints the median µs per call and the speed-up.

    .venv/bin/python benchmarks/jmes_micro.py [rounds]
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMUNITY = ROOT / ".bench-ce"
ORDER = Path("/work/shared/corpus/shopify/orders.create.json")
CALLS = 2000

CASES = {
    "reshape": "{order: id, customer: customer.email, "
               "lines: line_items[?quantity > `0`].{sku: sku, qty: quantity}, total: total_price}",
    "arithmetic": "{net: to_number(subtotal_price), tax: to_number(total_tax), "
                  "gross: to_number(subtotal_price) * (`1` + `0.2`) - to_number(total_tax), "
                  "units: sum(line_items[*].quantity) * `2` // `3` % `5`}",
    "let": "let $cur = currency, $order = name in "
           "line_items[*].{sku: sku, qty: quantity, currency: $cur, order: $order}",
    "strings": "{ref: upper(replace(name, '#', 'SO-')), email: lower(trim(email)), "
               "code: pad_left(to_string(order_number), `10`, '0'), "
               "first: split(customer.first_name, ' ')[0], found: find_first(email, '@')}",
    "dates": "{day: created_at[:10], time: created_at[11:19], offset: created_at[-6:], "
             "year: to_number(created_at[:4]), compact: join('', split(created_at[:10], '-'))}",
    # jmespath-community 1.1.3 has no ternary (JEP-21) yet; `&&`/`||` stand in for it here.
    "root": "line_items[*].{sku: sku, size: quantity > `1` && 'multi' || 'single', order: $.id}",
}
STANDARD = ("reshape",)      # the cases jmespath.py can parse


def per_call_us(search, data) -> float:
    """Microseconds per call over one batch of CALLS calls."""
    return timeit.timeit(lambda: search(data), number=CALLS) / CALLS * 1e6


def worker() -> None:
    """The community contender: compile every case, then time the case named on each stdin line."""
    sys.path.insert(0, str(COMMUNITY))
    import jmespath  # the Community Edition's, from .bench-ce
    assert Path(jmespath.__file__).is_relative_to(COMMUNITY), jmespath.__file__
    data = json.loads(ORDER.read_text())
    compiled = {name: jmespath.compile(text).search for name, text in CASES.items()}
    print(json.dumps({name: search(data) for name, search in compiled.items()}), flush=True)
    for line in sys.stdin:
        print(per_call_us(compiled[line.strip()], data), flush=True)


def ensure_community() -> None:
    if not (COMMUNITY / "jmespath").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(COMMUNITY),
                        "jmespath-community"], check=True)


def main(rounds: int = 15) -> None:
    sys.path.insert(0, str(ROOT))
    import jmespath
    from dsl.jmes import compile_expression
    ensure_community()
    data = json.loads(ORDER.read_text())
    ours = {name: compile_expression(text).search for name, text in CASES.items()}
    standard = {name: jmespath.compile(CASES[name]).search for name in STANDARD}
    proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    theirs = json.loads(proc.stdout.readline())
    for name, search in ours.items():
        assert search(data) == theirs[name], f"{name}: hookline and jmespath-community disagree"
    for name, search in standard.items():
        assert search(data) == ours[name](data), f"{name}: hookline and jmespath disagree"
    timings = {(name, who): [] for name in CASES for who in ("hookline", "community")}
    timings |= {(name, "jmespath"): [] for name in STANDARD}
    for _ in range(rounds):
        for name in CASES:
            timings[name, "hookline"].append(per_call_us(ours[name], data))
            if name in standard:
                timings[name, "jmespath"].append(per_call_us(standard[name], data))
            proc.stdin.write(name + "\n")
            proc.stdin.flush()
            timings[name, "community"].append(float(proc.stdout.readline()))
    proc.stdin.close()
    proc.wait()
    report(timings, rounds)


def report(timings: dict, rounds: int) -> None:
    print(f"{ORDER.name} ({ORDER.stat().st_size} bytes), {rounds} rounds x {CALLS} calls, median µs/call")
    print(f"  {'case':14s} {'hookline':>9s} {'jmespath':>9s} {'community':>10s} {'community/hookline':>19s}")
    for name in CASES:
        median = {who: statistics.median(t) for (case, who), t in timings.items() if case == name}
        standard = f"{median['jmespath']:9.2f}" if "jmespath" in median else f"{'-':>9s}"
        print(f"  {name:14s} {median['hookline']:9.2f} {standard} {median['community']:10.2f} "
              f"{median['community'] / median['hookline']:18.1f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker()
    else:
        main(*map(int, sys.argv[1:2]))
