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
    POST /erp/soap/orders                   SOAP 1.1 sales orders: needs Authorization: Bearer demo-erp-token,
         Content-Type text/xml, SOAPAction "urn:demo-erp#PlaceOrder" and an envelope (read with a strict
         XML parser) whose Body holds {urn:demo-erp}PlaceOrder with OrderRef, Currency and Line elements
         (attribute sku, child Qty); answers text/xml, a PlaceOrderResponse with OrderNumber
         (SO-<000001>, the same again for the same OrderRef), Status accepted, LineCount and
         Total (attribute currency), or Status rejected and a Reason for an unknown SKU or currency;
         a malformed envelope or a wrong header is a 500 SOAP Client fault, as SOAP 1.1 says
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
from xml.etree import ElementTree

import tornado.web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as read_xml

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
        self.sales_orders: dict[str, tuple] = {}   # SOAP OrderRef → (number, answer fields)


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


SOAP, ERP_NS = "http://schemas.xmlsoap.org/soap/envelope/", "urn:demo-erp"


class SoapFault(Exception):
    """A SOAP 1.1 Client fault: the request was not what the ERP takes."""


class SoapOrders(tornado.web.RequestHandler):
    """The SOAP ERP: reads the envelope with a strict parser (defusedxml over expat: a well-formedness
    or namespace error, a DTD or an entity is a fault) and answers a SOAP envelope."""

    def initialize(self, state: State):
        self.state = state

    def post(self):
        try:
            order = self.place_order()
        except SoapFault as fault:
            self.reply(500, self.envelope(_fault(str(fault))))
            return
        self.reply(200, self.envelope(_response(self.book(order))))

    def place_order(self) -> ElementTree.Element:
        headers = self.request.headers
        if headers.get("Authorization") != f"Bearer {ERP_TOKEN}":
            raise SoapFault("missing or wrong bearer token")
        if headers.get("Content-Type", "").partition(";")[0].strip() != "text/xml":
            raise SoapFault("SOAP 1.1 wants Content-Type: text/xml")
        if headers.get("SOAPAction") != f'"{ERP_NS}#PlaceOrder"':
            raise SoapFault(f'unknown SOAPAction; send "{ERP_NS}#PlaceOrder"')
        try:
            envelope = read_xml(self.request.body, forbid_dtd=True)
        except (ElementTree.ParseError, DefusedXmlException) as exc:
            raise SoapFault(f"the envelope is not well-formed XML: {exc}") from None
        order = envelope.find(f"{{{SOAP}}}Body/{{{ERP_NS}}}PlaceOrder")
        if envelope.tag != f"{{{SOAP}}}Envelope" or order is None or not order.findtext(f"{{{ERP_NS}}}OrderRef"):
            raise SoapFault("expected soap:Envelope/soap:Body/PlaceOrder with an OrderRef")
        return order

    def book(self, order) -> dict:
        ref, currency = order.findtext(f"{{{ERP_NS}}}OrderRef"), order.findtext(f"{{{ERP_NS}}}Currency")
        if ref in self.state.sales_orders:
            return self.state.sales_orders[ref]
        lines = [(line.get("sku"), line.findtext(f"{{{ERP_NS}}}Qty") or "") for line in order.iter(f"{{{ERP_NS}}}Line")]
        unknown = [sku or "(none)" for sku, qty in lines if sku not in PRICES_EUR or not qty.isdigit()]
        if currency not in RATES or unknown or not lines:
            reason = f"unknown currency {currency}" if currency not in RATES else \
                f"unknown SKU or quantity: {', '.join(unknown)}" if unknown else "no lines"
            return {"Status": "rejected", "Reason": reason}
        total = sum(int(qty) * round(PRICES_EUR[sku] * RATES[currency], 2) for sku, qty in lines)
        answer = {"OrderNumber": f"SO-{len(self.state.sales_orders) + 1:06d}", "Status": "accepted",
                  "LineCount": str(len(lines)), "Total": (f"{total:.2f}", {"currency": currency})}
        self.state.sales_orders[ref] = answer
        return answer

    def envelope(self, body: ElementTree.Element) -> bytes:
        envelope = ElementTree.Element(f"{{{SOAP}}}Envelope")
        ElementTree.SubElement(envelope, f"{{{SOAP}}}Body").append(body)
        return ElementTree.tostring(envelope, encoding="utf-8", xml_declaration=True)

    def reply(self, status: int, xml: bytes) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/xml; charset=utf-8")
        self.finish(xml)


def _fault(text: str) -> ElementTree.Element:
    fault = ElementTree.Element(f"{{{SOAP}}}Fault")
    ElementTree.SubElement(fault, "faultcode").text = "soap:Client"
    ElementTree.SubElement(fault, "faultstring").text = text
    return fault


def _response(fields: dict) -> ElementTree.Element:
    """``{"Total": ("12.00", {"currency": "EUR"}), "Status": "accepted"}`` → a PlaceOrderResponse."""
    response = ElementTree.Element(f"{{{ERP_NS}}}PlaceOrderResponse")
    for name, value in fields.items():
        text, attributes = value if isinstance(value, tuple) else (value, {})
        ElementTree.SubElement(response, f"{{{ERP_NS}}}{name}", attributes).text = text
    return response


def make_app(state: State | None = None) -> tornado.web.Application:
    state = state or State()
    erp, bo = dict(state=state, token=ERP_TOKEN), dict(state=state, token=BO_TOKEN)
    return tornado.web.Application([
        (r"/", Ready, dict(state=state)),
        (r"/erp/shops/([^/]+)/reservations", Reservations, erp),
        (r"/erp/payments", Payments, erp),
        (r"/erp/payments/([^/]+)", Payment, erp),
        (r"/erp/soap/orders", SoapOrders, dict(state=state)),
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
