"""Run history, store side: CPU per run of appending runs to the SQLite store's segment files
(engine/queue/segments.py), as a flush does: 128 runs of a core-benchmark request's size (a
445-byte record, the body cut at 4096 bytes, a 246-byte response) a call, the bounds
(keep 1000, 7 days) applied after each, in a temporary directory. The rows are built before
the clock starts. docs/performance.md, "Run history".

    .venv/bin/python benchmarks/history_micro.py [--flushes N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.queue.segments import Segments   # noqa: E402

RECORD, BODY, RESPONSE = b"r" * 445, b"b" * 4096, b"s" * 246
PER_FLUSH = 128


def one_pass(flushes: int) -> float:
    with tempfile.TemporaryDirectory(prefix="hookline-history-micro-") as root:
        segments = Segments(root)
        start = time.time()
        batches = [[(os.urandom(8).hex(), "bench-order", start + (f * PER_FLUSH + i) * 1e-4, "", RECORD, BODY,
                     RESPONSE) for i in range(PER_FLUSH)] for f in range(flushes)]
        bounds = [("bench-order", 1000, start - 7 * 86400)]
        cpu = time.process_time()
        for rows in batches:
            segments.append(rows, bounds)
        cpu = time.process_time() - cpu
        segments.close()
        return cpu / (flushes * PER_FLUSH) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flushes", type=int, default=400)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    results = [one_pass(args.flushes) for _ in range(args.passes)]
    print(f"segments: cpu_us_per_run={statistics.median(results):.2f} "
          f"passes={[round(r, 2) for r in results]} flushes={args.flushes} runs_per_flush={PER_FLUSH}")


if __name__ == "__main__":
    main()
