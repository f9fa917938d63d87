"""Side-by-side CPU cost: several Hookline servers on ONE core, loaded at the same time.

A diagnostic for changes too small for bench.py's sequential rounds on a noisy machine (rounds
there swing by 2x): every server here is pinned to core 0 and loaded at once by its own wrk on
core 1, so whatever else the machine does slows all of them alike. Per round, each server's CPU
per request (from /proc, every thread) is divided by the first server's: the ratios are paired
within the round, and their median over the rounds is printed, with the main thread's user and
system time, the other threads', page faults and context switches a request.

    .venv/bin/python benchmarks/side_by_side.py --rounds 30 --duration 3 \
        cn=nohistory c=. old=/tmp/old-checkout cm=.:--metrics-port=auto

A server is NAME=SOURCE[:ARG...]: SOURCE is a checkout of Hookline (``.`` this one; another
revision in a ``git worktree``), run as ``python -m engine serve benchmarks/pipelines`` with
this venv; ``nohistory`` is this checkout with ``receive.history: false`` added to each
benchmark pipeline. An ARG goes to ``serve`` (``--metrics-port=auto`` picks a free port),
except ``@NAME=VALUE``, which sets an environment variable of that server. Each server has its
own SQLite store in a temporary directory.

Sharing one core, the servers evict each other's caches: a cost that touches memory weighs
more here than in bench.py, where each server has the core to itself. Use it to rank changes,
then confirm with bench.py, which checks the targets (docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the helpers: Server, WRK_LUA, parse_wrk, free_port, unrecorded_pipelines)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def threads_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """{thread id: (user s, system s)} of every thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def faults_switches(pid: int) -> tuple[int, int]:
    """(minor page faults, context switches) of every thread of ``pid`` so far."""
    faults = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except OSError:
            continue
    return faults, switches


def server_for(name: str, spec: str, tmp: Path) -> bench.Server:
    source, *args = spec.split(":")
    pipelines = HERE / "pipelines"
    if source == "nohistory":
        source, pipelines = ".", bench.unrecorded_pipelines(tmp)
    src = (ROOT if source == "." else Path(source)).resolve()
    env = dict(a[1:].split("=", 1) for a in args if a.startswith("@"))      # @NAME=VALUE: environment
    args = [f"--metrics-port={bench.free_port()}" if a == "--metrics-port=auto" else a for a in args
            if not a.startswith("@")]
    cmd = [sys.executable, "-m", "engine", "serve", str(pipelines), "--host", "127.0.0.1", "--port", "{port}",
           "--store", f"sqlite:{tmp}/{name}.db", *args]
    return bench.Server(name, cmd, pin=True, env={"PYTHONPATH": str(src), **env}, cwd=src, start_timeout=30.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("servers", nargs="+", help="NAME=SOURCE[:ARG...]; the first is the reference")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--connections", type=int, default=16, help="per server")
    ap.add_argument("--body", type=Path, default=Path("/work/shared/corpus/shopify/orders.create.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hookline-sbs-"))
    lua = tmp / "post.lua"
    lua.write_text(bench.WRK_LUA)
    body = args.body.read_bytes()
    servers = []
    try:
        for item in args.servers:
            name, _, spec = item.partition("=")
            s = server_for(name, spec, tmp)
            s.start(body)
            servers.append(s)
            print(f"{name}: pid={s.proc.pid} {' '.join(s.cmd[3:])} PYTHONPATH={s.env['PYTHONPATH']}", flush=True)
        ratios: dict[str, list[float]] = {s.key: [] for s in servers}
        per_req: dict[str, list[float]] = {s.key: [] for s in servers}
        parts: dict[str, list[tuple]] = {s.key: [] for s in servers}     # (main user, main sys, others)
        for rnd in range(args.rounds + 1):           # round 0 warms up
            before = {s.key: threads_cpu(s.proc.pid) for s in servers}
            fs0 = {s.key: faults_switches(s.proc.pid) for s in servers}
            env = dict(os.environ, BENCH_BODY=str(args.body))
            wrks = {s.key: subprocess.Popen(["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}",
                                             f"-d{args.duration}s", "--latency", "-s", str(lua), s.url],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                    for s in servers}
            results = {k: bench.parse_wrk(p.communicate(timeout=args.duration + 60)[0]) for k, p in wrks.items()}
            after = {s.key: threads_cpu(s.proc.pid) for s in servers}
            fs1 = {s.key: faults_switches(s.proc.pid) for s in servers}
            if rnd == 0:
                continue
            line = []
            for s in servers:
                n = max(results[s.key]["requests"], 1)
                threads = sorted(((u1 + s1 - sum(before[s.key].get(t, (0, 0))), u1 - before[s.key].get(t, (0, 0))[0])
                                  for t, (u1, s1) in after[s.key].items()), reverse=True)
                total = sum(c for c, _ in threads) * 1e6 / n
                user = sum(u for _, u in threads) * 1e6 / n
                per_req[s.key].append(total)
                main = after[s.key][s.proc.pid]
                main0 = before[s.key].get(s.proc.pid, (0, 0))
                mu, ms = (main[0] - main0[0]) * 1e6 / n, (main[1] - main0[1]) * 1e6 / n
                parts[s.key].append((mu, ms, total - mu - ms, (fs1[s.key][0] - fs0[s.key][0]) / n,
                                     (fs1[s.key][1] - fs0[s.key][1]) / n))
                tops = "/".join(f"{c * 1e6 / n:.0f}({u * 1e6 / n:.0f})" for c, u in threads[:3])
                line.append(f"{s.key} {total:.0f}us (user {user:.0f}; by thread, cpu(user): {tops}) {n / args.duration:.0f}/s")
            ref = per_req[servers[0].key][-1]
            for s in servers:
                ratios[s.key].append(per_req[s.key][-1] / ref)
            print(f"round {rnd}: " + " | ".join(line), flush=True)
        ref = servers[0].key
        for s in servers:
            r = ratios[s.key]
            mu, ms, other, faults, switches = (statistics.median(x) for x in zip(*parts[s.key]))
            print(f"{s.key}: cpu/req median {statistics.median(per_req[s.key]):.1f}us (main thread user {mu:.1f}, "
                  f"system {ms:.1f}; other threads {other:.1f}; page faults {faults:.3f}, context switches {switches:.3f} a request); paired cpu {s.key}/{ref} "
                  f"median {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})", flush=True)
    finally:
        for s in servers:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
