"""The demo destination the example pipelines call: a toy ERP, pricing service and back office.

    python pipelines/demo_destination.py --port 8099    # `make run` starts it for you

Binds 127.0.0.1, prints one line once it listens (no access log), exits 0 on SIGTERM/SIGINT.
All state is in memory and starts from the seed below on every start.

    GET  /                                  200 {"ok": true}
    POST /erp/shops/{shop}/reservations     needs Authorization: Bearer demo-erp-token
         body {order_id, number, shop, lines: [{sku, qty}]}, all or nothing:
         200 {"reservation_id": "res-<n>", "reserved": [{sku, qty}]}
         409 {"unavailable": [{sku, requested, available}]}, and nothing is reserved
    GET  /pricing/prices/{sku}?currency=EUR
         200 {sku, currency, amount, valid_until}; 404 {"error": "unknown sku"} (or "unknown currency")
    POST /backoffice/stores/{store}/sales   needs Authorization: Bearer demo-bo-token
         body {external_id, till, sold_at, lines: [{sku, qty, unit_price}], paid}
         201 {"document_number": "BO-<store>-<000001>"}
         422 {"error": "payment does not cover the total"} when paid < sum(qty * unit_price)
    POST /erp/payments                      needs Authorization: Bearer demo-erp-token
         body {invoice, ...} (what stripe-invoice-to-erp sends), recorded by invoice:
         201 {"payment_id": "pay-<n>"}
         409 {"error": "invoice already paid", "payment_id": ...} for another key, same invoice
    GET  /erp/payments/{invoice}            needs Authorization: Bearer demo-erp-token
         200 {"payment_id", "payment": <the body booked>, "deliveries": <POSTs for it, replays
         included>}; 404 {"error": "no payment for this invoice"}

Seed: stock 25 for each SKU of tests/data/corpus/shopify/orders.create.json (SKU2006-001,
LENS-PROTECT-2YR, CASE-LEATHER-PREM, SKU2006-020, SKU2006-035) and 0 for OUT-OF-STOCK-1; any
other SKU is unknown (available 0). Prices are the corpus order's, in EUR; USD and GBP are
converted at the fixed rates in RATES.

A repeated ``Idempotency-Key`` replays the first successful answer and changes nothing. Refused
requests (401/409/422) changed nothing, so they are not remembered: a retry is judged afresh.
A missing or wrong bearer token is 401; a body that is not what the pipelines send is 400.
The payments endpoints let a test (or a curl user) see that an async delivery arrived, and
how many times.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import signal

import tornado.web

ERP_TOKEN, BO_TOKEN = "demo-erp-token", "demo-bo-token"
CORPUS_SKUS = ("SKU2006-001", "LENS-PROTECT-2YR", "CASE-LEATHER-PREM", "SKU2006-020", "SKU2006-035")
STOCK_SEED = {**{sku: 25 for sku in CORPUS_SKUS}, "OUT-OF-STOCK-1": 0}
PRICES_EUR = {"SKU2006-001": 89.99, "LENS-PROTECT-2YR": 19.99, "CASE-LEATHER-PREM": 24.99,
              "SKU2006-020": 159.99, "SKU2006-035": 119.99, "OUT-OF-STOCK-1": 9.99}
RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}


class State:
    """What the destination remembers between requests (one event loop: no locks needed)."""

    def __init__(self):
        self.stock = dict(STOCK_SEED)
        self.reservations = 0
        self.documents: dict[str, int] = {}        # store → last document counter
        self.payments: dict[str, dict] = {}        # invoice → {payment_id, payment, deliveries}
        self.replies: dict[tuple, tuple] = {}      # (endpoint, Idempotency-Key) → (status, body)


class JsonHandler(tornado.web.RequestHandler):
    """Answers JSON, errors included; subclasses get the shared State through ``initialize``."""

    def initialize(self, state: State, token: str | None = None):
        self.state, self.token = state, token

    def prepare(self):
        if self.token and self.request.headers.get("Authorization") != f"Bearer {self.token}":
            self.set_header("WWW-Authenticate", "Bearer")
            self.answer(401, {"error": "missing or wrong bearer token"})

    def answer(self, status: int, body) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def write_error(self, status_code, **kwargs):
        self.answer(status_code, {"error": self._reason.lower()})

    def body(self, field: str = "lines", kind: type = list) -> dict:
        """The JSON object sent, which must hold ``field`` of type ``kind``; 400 otherwise."""
        try:
            value = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, reason="Body is not JSON") from None
        if not isinstance(value, dict) or not isinstance(value.get(field), kind):
            raise tornado.web.HTTPError(400, reason=f"Body needs {field} ({kind.__name__})")
        return value

    def once(self, endpoint: str, handle) -> None:
        """Answer ``handle()``; with an Idempotency-Key, replay its first 2xx answer instead."""
        key = self.request.headers.get("Idempotency-Key")
        if key and (endpoint, key) in self.state.replies:
            status, body = self.state.replies[(endpoint, key)]
            self.answer(200 if status == 201 else status, body)
            return
        status, body = handle()
        if key and 200 <= status < 300:
            self.state.replies[(endpoint, key)] = (status, body)
        self.answer(status, body)


class Ready(JsonHandler):
    def get(self):
        self.answer(200, {"ok": True})


class Reservations(JsonHandler):
    def post(self, shop):
        lines = self.body()["lines"]
        if not all(isinstance(line, dict) and type(line.get("qty")) is int and line["qty"] >= 0
                   for line in lines):
            raise tornado.web.HTTPError(400, reason="Every line needs a qty >= 0")
        self.once(f"erp/{shop}", lambda: self.reserve(lines))

    def reserve(self, lines):
        requested: dict = {}
        for line in lines:
            requested[line.get("sku")] = requested.get(line.get("sku"), 0) + line["qty"]
        unavailable = [{"sku": sku, "requested": qty, "available": self.state.stock.get(sku, 0)}
                       for sku, qty in requested.items() if qty > self.state.stock.get(sku, 0)]
        if unavailable:
            return 409, {"unavailable": unavailable}
        for sku, qty in requested.items():
            self.state.stock[sku] = self.state.stock.get(sku, 0) - qty
        self.state.reservations += 1
        reserved = [{"sku": line.get("sku"), "qty": line.get("qty")} for line in lines]
        return 200, {"reservation_id": f"res-{self.state.reservations}", "reserved": reserved}


class Prices(JsonHandler):
    def get(self, sku):
        currency = self.get_query_argument("currency", "EUR")
        if sku not in PRICES_EUR:
            self.answer(404, {"error": "unknown sku"})
        elif currency not in RATES:
            self.answer(404, {"error": "unknown currency"})
        else:
            valid_until = datetime.date.today() + datetime.timedelta(days=1)
            amount = round(PRICES_EUR[sku] * RATES[currency], 2)
            self.answer(200, {"sku": sku, "currency": currency, "amount": amount,
                              "valid_until": valid_until.isoformat()})


class Payments(JsonHandler):
    def post(self):
        payment = self.body("invoice", str)
        if payment["invoice"] in self.state.payments:
            self.state.payments[payment["invoice"]]["deliveries"] += 1
        self.once("erp/payments", lambda: self.book(payment))

    def book(self, payment):
        if payment["invoice"] in self.state.payments:
            recorded = self.state.payments[payment["invoice"]]
            return 409, {"error": "invoice already paid", "payment_id": recorded["payment_id"]}
        payment_id = f"pay-{len(self.state.payments) + 1}"
        self.state.payments[payment["invoice"]] = {"payment_id": payment_id, "payment": payment,
                                                   "deliveries": 1}
        return 201, {"payment_id": payment_id}


class Payment(JsonHandler):
    def get(self, invoice):
        if invoice in self.state.payments:
            self.answer(200, self.state.payments[invoice])
        else:
            self.answer(404, {"error": "no payment for this invoice"})


class Sales(JsonHandler):
    def post(self, store):
        sale = self.body()
        self.once(f"backoffice/{store}", lambda: self.book(store, sale))

    def book(self, store, sale):
        total = sum(line["qty"] * line["unit_price"] for line in sale["lines"])
        if round(sale.get("paid") or 0, 2) < round(total, 2):
            return 422, {"error": "payment does not cover the total"}
        number = self.state.documents[store] = self.state.documents.get(store, 0) + 1
        return 201, {"document_number": f"BO-{store}-{number:06d}"}


def make_app(state: State | None = None) -> tornado.web.Application:
    state = state or State()
    erp, bo = dict(state=state, token=ERP_TOKEN), dict(state=state, token=BO_TOKEN)
    return tornado.web.Application([
        (r"/", Ready, dict(state=state)),
        (r"/erp/shops/([^/]+)/reservations", Reservations, erp),
        (r"/erp/payments", Payments, erp),
        (r"/erp/payments/([^/]+)", Payment, erp),
        (r"/pricing/prices/([^/]+)", Prices, dict(state=state)),
        (r"/backoffice/stores/([^/]+)/sales", Sales, bo),
    ], log_function=_no_access_log)


def _no_access_log(handler) -> None:
    """The tests pipe this process's output and never read it: a chatty log would fill the pipe."""


async def main(port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = make_app().listen(port, address="127.0.0.1")
    print(f"demo destination: listening on http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The demo ERP, pricing service and back office.")
    parser.add_argument("--port", type=int, default=8099)
    raise SystemExit(asyncio.run(main(parser.parse_args().port)))
