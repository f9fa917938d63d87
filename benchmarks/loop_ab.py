#!/usr/bin/env python3
"""One pipeline served twice, `hookline serve --loop asyncio` beside `--loop uvloop`, timed in
interleaved rounds of one run (A B, B A, A B, ...): what the event loop alone changes.

  c  benchmarks/pipelines        (sync: validate + reshape, 200)
  d  benchmarks/pipelines-async  --store sqlite:<tmp>/...   (202 + async branch)
  e  benchmarks/pipelines-async  --store redis://127.0.0.1:6379/0?prefix=loopab-<random>-N:

Pinning and load as in bench.py: each server on core 0, wrk -t1 -c32 and the destination on
core 1. For d and e the next round starts only once the destination has stopped receiving (the
previous round's backlog is delivered), so that no round pays for another's delivery.
Prints, per loop, the median req/s, p50, p99 and the server's CPU per request, and each round.

Usage: .venv/bin/python benchmarks/loop_ab.py {c,d,e} [--rounds 6] [--duration 8]
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid


from bench import (BIN, HERE, LOGS, REDIS_URL, WRK_LUA, DEFAULT_BODY, NotStarted, Server, dest_count,
                   redis_cleanup, run_wrk)

LOOPS = ("asyncio", "uvloop")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", choices=("c", "d", "e"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=8)
    args = ap.parse_args(argv)
    body = DEFAULT_BODY.read_bytes()
    LOGS.mkdir(parents=True, exist_ok=True)
    lua = LOGS / "post.lua"
    lua.write_text(WRK_LUA)
    exe = BIN / "hookline"
    tmp = tempfile.mkdtemp(prefix="hookline-loopab-")
    prefix = f"loopab-{uuid.uuid4().hex[:8]}-"
    dest = servers = None
    try:
        dest = Server("dest", [sys.executable, str(HERE / "dest_server.py"), "{port}"], pin=True,
                      path="/recv", core="1")
        dest.start(b"{}")
        servers = {}
        for i, loop in enumerate(LOOPS):
            cmd = [str(exe), "serve", str(HERE / ("pipelines" if args.config == "c" else "pipelines-async")),
                   "--host", "127.0.0.1", "--port", "{port}", "--loop", loop]
            if args.config == "d":
                cmd += ["--store", f"sqlite:{tmp}/{loop}.db"]
            elif args.config == "e":
                cmd += ["--store", f"{REDIS_URL}?prefix={prefix}{i}:"]
            s = Server(f"{args.config}-{loop}", cmd, pin=True,
                       env={"BENCH_DEST_URL": f"http://127.0.0.1:{dest.port}"})
            s.start(body)
            servers[loop] = s
            run_wrk(s, 2, 32, lua, DEFAULT_BODY, True)          # warm-up
            settle(args.config, dest)
        print(f"loop_ab: config={args.config} rounds={args.rounds} duration={args.duration}s "
              f"wrk -t1 -c32, servers on core 0, wrk and destination on core 1", flush=True)
        for r in range(args.rounds):
            for loop in (LOOPS if r % 2 == 0 else LOOPS[::-1]):
                res = run_wrk(servers[loop], args.duration, 32, lua, DEFAULT_BODY, True)
                if res["non2xx"] or res["errors"]:
                    print(f"round {r + 1} {loop}: {res['non2xx']} non-2xx, {res['errors']} socket errors")
                servers[loop].rounds.append(res)
                print(f"round {r + 1}/{args.rounds} {loop:<7} req/s={res['rps']:.0f} "
                      f"p50={res['p50_us'] / 1000:.1f}ms p99={res['p99_us'] / 1000:.1f}ms "
                      f"cpu_us={res['cpu_us']:.0f}", flush=True)
                settle(args.config, dest)
        med = {}
        for loop, s in servers.items():
            m = med[loop] = {k: statistics.median(x[k] for x in s.rounds) for k in ("rps", "p50_us", "p99_us", "cpu_us")}
            by_round = ", ".join(f"{x['p99_us'] / 1000:.1f}" for x in s.rounds)
            print(f"{args.config} {loop:<7} req/s={m['rps']:.0f} p50={m['p50_us'] / 1000:.1f}ms "
                  f"p99={m['p99_us'] / 1000:.1f}ms cpu_us={m['cpu_us']:.0f} (medians of {len(s.rounds)}; "
                  f"p99 by round {by_round})")
        a, u = med["asyncio"], med["uvloop"]
        print(f"uvloop/asyncio: req/s {u['rps'] / a['rps']:.2f} p99 {u['p99_us'] / a['p99_us']:.2f} "
              f"cpu_us {u['cpu_us'] / a['cpu_us']:.2f}")
        return 0
    except NotStarted as e:
        print(f"loop_ab: a server did not start: {e}")
        return 1
    finally:
        for s in (servers or {}).values():
            s.stop()
        if dest is not None:
            dest.stop()
        if args.config == "e":
            for i in range(len(LOOPS)):
                redis_cleanup(f"{prefix}{i}:")
        shutil.rmtree(tmp, ignore_errors=True)


def settle(config, dest, quiet_s=1.0, timeout=120.0):
    """d/e: wait until the destination has received nothing new for ``quiet_s``."""
    if config == "c":
        time.sleep(1.0)
        return
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        n = dest_count(dest)
        if n == last:
            return
        last = n
        time.sleep(quiet_s)


if __name__ == "__main__":
    sys.exit(main())
