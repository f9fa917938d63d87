"""Benchmark server (a): the same work as pipelines/bench-order.yaml, written by hand.

A plain Tornado RequestHandler as a competent engineer would write it for one webhook:
orjson to parse (400 on bad JSON), a fastjsonschema validator compiled once at start-up
(422 on failure), a JMESPath expression compiled once, orjson to serialise.

Usage: handler_a.py PORT [SCHEMA.json]     (binds 127.0.0.1, single process)
"""
import asyncio
import sys
from pathlib import Path

import fastjsonschema
import jmespath
import orjson
import tornado.web

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "pipelines" / "schemas" / "shopify-order.schema.json"
EXPR = ("{order: id, customer: customer.email, "
        "lines: line_items[?quantity > `0`].{sku: sku, qty: quantity}, total: total_price}")


class HookHandler(tornado.web.RequestHandler):
    def initialize(self, validate, expr):
        self.validate = validate
        self.expr = expr

    def _json(self, status, obj):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(obj))

    def post(self):
        try:
            body = orjson.loads(self.request.body)
        except orjson.JSONDecodeError as e:
            return self._json(400, {"error": f"invalid JSON: {e}"})
        try:
            self.validate(body)
        except fastjsonschema.JsonSchemaException as e:
            return self._json(422, {"error": e.message})
        self._json(200, self.expr.search(body))


async def main(port, schema_path):
    validate = fastjsonschema.compile(orjson.loads(Path(schema_path).read_bytes()))
    app = tornado.web.Application([
        (r"/hook", HookHandler, {"validate": validate, "expr": jmespath.compile(EXPR)}),
    ])
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else SCHEMA_PATH))
