#!/usr/bin/env python3
"""Write a Node-RED flows.json for benchmark peer (b) from a JSON Schema.

Adapted from shared/benchmarks/nodered/make_flows.py. Changes: the JSONata expression matches
the Hookline pipeline benchmarks/pipelines/bench-order.yaml and handler_a.py (Shopify
orders/create: "total" is total_price), the /hook-fn endpoint (hand-written JS checks for a
different order shape) is dropped, and the flows are also buildable from Python
(bench.py imports build_flows).

Usage: nodered_flows.py SCHEMA.json OUT_flows.json

Endpoints (all POST, on the Node-RED port):
  /hello     http in -> change(payload = {"ok":true}) -> http response      (Node-RED floor)
  /hook      http in -> change(msg.schema = schema) -> json(obj, validates with the
             bundled ajv) -> change(JSONata reshaping) -> http response;
             a catch node turns a schema failure into 422 {"error": ...}

The schema handed to ajv drops "$schema"/"$id" (Node-RED's ajv instance knows
draft-07/06 meta-schemas only) and "format" (no ajv-formats in Node-RED, and
ajv's strict mode refuses unknown formats). Everything else is identical.
"""
import json
import sys
from pathlib import Path

# Node-RED evaluates JSONata against the whole msg, hence "payload.{...}". Same result as the
# JMESPath  {order: id, customer: customer.email,
#            lines: line_items[?quantity > `0`].{sku: sku, qty: quantity}, total: total_price}
JSONATA = ('payload.{"order": id, "customer": customer.email, '
           '"lines": [line_items[quantity > 0].{"sku": sku, "qty": quantity}], '
           '"total": total_price}')

TAB = "bench_tab"


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in ("$schema", "$id", "format")}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def _node(id_, type_, x, y, wires=(), **kw):
    d = {"id": id_, "type": type_, "z": TAB, "name": id_, "x": x, "y": y}
    d.update(kw)
    d["wires"] = [] if type_ == "http response" else [list(wires)]
    return d


def build_flows(schema):
    ajv_schema = strip(schema)
    flows = [
        {"id": TAB, "type": "tab", "label": "webhook bench", "disabled": False, "info": ""},
        # /hello
        _node("hello_in", "http in", 120, 60, ["hello_set"], url="/hello", method="post", upload=False,
              swaggerDoc=""),
        _node("hello_set", "change", 320, 60, ["hello_out"], rules=[
            {"t": "set", "p": "payload", "pt": "msg", "to": '{"ok":true}', "tot": "json"}],
            action="", property="", from_="", to="", reg=False),
        _node("hello_out", "http response", 520, 60, statusCode="", headers={}),
        # /hook : schema (ajv) + JSONata
        _node("hook_in", "http in", 120, 140, ["hook_schema"], url="/hook", method="post", upload=False,
              swaggerDoc=""),
        _node("hook_schema", "change", 320, 140, ["hook_json"], rules=[
            {"t": "set", "p": "schema", "pt": "msg", "to": json.dumps(ajv_schema), "tot": "json"}],
            action="", property="", from_="", to="", reg=False),
        _node("hook_json", "json", 500, 140, ["hook_map"], property="payload", action="obj", pretty=False),
        _node("hook_map", "change", 680, 140, ["hook_out"], rules=[
            {"t": "set", "p": "payload", "pt": "msg", "to": JSONATA, "tot": "jsonata"}],
            action="", property="", from_="", to="", reg=False),
        _node("hook_out", "http response", 880, 140, statusCode="", headers={}),
        _node("hook_catch", "catch", 320, 200, ["hook_err"], scope=["hook_json", "hook_map"], uncaught=False),
        _node("hook_err", "function", 500, 200, ["hook_out"], func=(
            'msg.statusCode = 422;\n'
            'msg.payload = { error: (msg.error && msg.error.message) || "invalid" };\n'
            'return msg;'), outputs=1, timeout=0, noerr=0, initialize="", finalize="", libs=[]),
    ]
    for f in flows:           # "from" is a Python keyword; the change node wants "from"
        if "from_" in f:
            f["from"] = f.pop("from_")
    return flows


def main(argv):
    schema = json.loads(Path(argv[1]).read_text())
    out = Path(argv[2])
    flows = build_flows(schema)
    out.write_text(json.dumps(flows, indent=2) + "\n")
    print(f"wrote {out} ({len(flows)} nodes)")


if __name__ == "__main__":
    main(sys.argv)
