"""The example pipelines (pipelines/*.yaml), end to end over real HTTP.

A real ``hookline serve pipelines`` talks to the real demo destination
(pipelines/demo_destination.py). Its stock is shared by the tests of this
module, so every test uses its own order id / sale id / Stripe event and
invoice id (and so its own Idempotency-Key) and takes one unit of a SKU at
most: test order never matters. A Stripe invoice reaches the demo ERP in the
background (an async branch, sent by the delivery worker), so those tests
poll the ERP's ``GET /erp/payments/<invoice>`` for it.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
import time
from xml.etree import ElementTree

import pytest
import requests
import stripe

from conftest import CORPUS, ROOT, demo_env, free_port, start_hookline

PROBLEM = "application/problem+json"
ORDER = json.loads((CORPUS / "shopify" / "orders.create.json").read_text())
INVOICE_PAID = (CORPUS / "stripe" / "invoice.paid.json").read_bytes()
STRIPE_SECRET = demo_env("")["STRIPE_WEBHOOK_SECRET"]
ERP_AUTH = {"Authorization": f"Bearer {demo_env('')['ERP_TOKEN']}"}
_ids = itertools.count(1)


def an_order(**changes) -> dict:
    """The corpus order with a fresh id (the ERP's Idempotency-Key derives from it)."""
    order = copy.deepcopy(ORDER)
    order["id"] = 7_000_000_000 + next(_ids)
    order.update(changes)
    return order


def a_sale(sale_id: str, paid: float = 109.98) -> dict:
    return {"sale_id": sale_id, "store_id": "store-7", "till_id": "till-2", "sold_at": "2026-04-02T10:15:00Z",
            "lines": [{"sku": "SKU2006-001", "qty": 1, "unit_price": 89.99},
                      {"sku": "LENS-PROTECT-2YR", "qty": 1, "unit_price": 19.99}],
            "payments": [{"method": "card", "amount": paid - 10}, {"method": "cash", "amount": 10}]}


def post_order(server, order, shop="demo-shop"):
    return requests.post(f"{server.url}/hooks/shopify/{shop}/orders", json=order, timeout=10)


def pointers(resp) -> list[str]:
    return [e["pointer"] for e in resp.json()["errors"]]


# order-to-erp

def test_corpus_order_is_reserved(examples_server):
    resp = requests.post(f"{examples_server.url}/hooks/shopify/demo-shop/orders",
                         data=(CORPUS / "shopify" / "orders.create.json").read_bytes(),
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert re.fullmatch(r"res-\d+", body["reservation"])
    assert resp.headers["X-Reservation-Id"] == body["reservation"]
    assert body["order"] == ORDER["id"]
    assert body["reserved"] == [{"sku": li["sku"], "qty": li["quantity"]} for li in ORDER["line_items"]]


def test_redelivered_order_keeps_its_reservation(examples_server):
    order = an_order()
    first, again = post_order(examples_server, order), post_order(examples_server, order)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()


def test_zero_quantity_lines_are_not_sent(examples_server):
    order = an_order()
    order["line_items"][1]["quantity"] = 0
    resp = post_order(examples_server, order)
    assert resp.status_code == 200, resp.text
    assert "LENS-PROTECT-2YR" not in [line["sku"] for line in resp.json()["reserved"]]


def test_order_with_an_out_of_stock_line_is_409(examples_server):
    order = an_order()
    order["line_items"].append({**order["line_items"][0], "id": 1, "sku": "OUT-OF-STOCK-1", "quantity": 1})
    resp = post_order(examples_server, order)
    assert resp.status_code == 409, resp.text
    assert resp.json() == {"error": "out_of_stock", "order": order["id"],
                           "unavailable": [{"sku": "OUT-OF-STOCK-1", "requested": 1, "available": 0}]}
    assert "X-Reservation-Id" not in resp.headers


def test_order_without_line_items_is_422(examples_server):
    order = an_order()
    del order["line_items"]
    resp = post_order(examples_server, order)
    assert resp.status_code == 422
    assert resp.headers["Content-Type"] == PROBLEM
    problem = resp.json()
    assert problem["status"] == 422 and problem["type"].endswith("/validation")
    assert "/body" in pointers(resp)


def test_malformed_json_is_400(examples_server):
    resp = requests.post(f"{examples_server.url}/hooks/shopify/demo-shop/orders", data=b'{"id": ',
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == PROBLEM


# order-to-soap-erp

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def post_sales_order(server, order, shop="demo-shop"):
    return requests.post(f"{server.url}/hooks/shopify/{shop}/sales-orders", json=order, timeout=10)


def test_order_becomes_a_sales_order_in_the_soap_erp(examples_server):
    order = an_order(currency="EUR")
    resp = post_sales_order(examples_server, order)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert re.fullmatch(r"SO-\d{6}", body["erp_order"]) and resp.headers["X-Erp-Order"] == body["erp_order"]
    total = sum(float(line["price"]) * line["quantity"] for line in order["line_items"])
    assert body == {"order": order["id"], "erp_order": body["erp_order"], "lines": len(order["line_items"]),
                    "total": round(total, 2), "currency": "EUR"}


def test_redelivered_order_keeps_its_sales_order_number(examples_server):
    order = an_order()
    first, again = post_sales_order(examples_server, order), post_sales_order(examples_server, order)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json() == first.json() and first.json()["currency"] == "USD"


def test_sales_order_the_erp_rejects_is_422_with_its_reason(examples_server):
    order = an_order()
    order["line_items"][2]["sku"] = "NO-SUCH-SKU & <CO>"        # escaped on the way out, read back
    resp = post_sales_order(examples_server, order)
    assert resp.status_code == 422, resp.text
    assert resp.json() == {"error": "erp_rejected", "order": order["id"],
                           "reason": "unknown SKU or quantity: NO-SUCH-SKU & <CO>"}


ENVELOPE = ('<soap:Envelope xmlns:soap="%s"><soap:Body><PlaceOrder xmlns="urn:demo-erp">'
            '<OrderRef>r-1</OrderRef><Currency>EUR</Currency><Line sku="SKU2006-001"><Qty>2</Qty></Line>'
            '</PlaceOrder></soap:Body></soap:Envelope>') % SOAP_NS
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"urn:demo-erp#PlaceOrder"',
                **ERP_AUTH}


@pytest.mark.parametrize("body, headers, fault", [
    (ENVELOPE, {}, None),
    (ENVELOPE.replace("</Qty>", ""), {}, "not well-formed"),
    (ENVELOPE.replace(' xmlns:soap="%s"' % SOAP_NS, ""), {}, "not well-formed"),      # unbound prefix
    ('<!DOCTYPE x [<!ENTITY e "x">]>' + ENVELOPE, {}, "not well-formed"),
    (ENVELOPE, {"SOAPAction": "PlaceOrder"}, "unknown SOAPAction"),
    (ENVELOPE, {"Content-Type": "application/json"}, "text/xml"),
    (ENVELOPE, {"Authorization": "Bearer nope"}, "bearer token"),
])
def test_the_demo_soap_erp_reads_envelopes_strictly(demo_destination, body, headers, fault):
    resp = requests.post(f"{demo_destination.url}/erp/soap/orders", data=body.encode(),
                         headers={**SOAP_HEADERS, **headers}, timeout=10)
    assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
    answer = ElementTree.fromstring(resp.content)
    if fault is None:
        assert resp.status_code == 200
        assert answer.findtext(f"{{{SOAP_NS}}}Body/{{urn:demo-erp}}PlaceOrderResponse/{{urn:demo-erp}}Status") \
            == "accepted"
    else:
        assert resp.status_code == 500
        assert fault in answer.findtext(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault/faultstring")


# price-lookup

def test_known_sku_is_priced(examples_server):
    resp = requests.get(f"{examples_server.url}/prices/SKU2006-001", params={"currency": "EUR"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "max-age=60"
    body = resp.json()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", body.pop("valid_until"))
    assert body == {"sku": "SKU2006-001", "currency": "EUR", "unit_price": 89.99}


def test_currency_defaults_to_eur_and_usd_is_converted(examples_server):
    eur = requests.get(f"{examples_server.url}/prices/SKU2006-020", timeout=10).json()
    usd = requests.get(f"{examples_server.url}/prices/SKU2006-020?currency=USD", timeout=10).json()
    assert (eur["currency"], eur["unit_price"]) == ("EUR", 159.99)
    assert usd["currency"] == "USD" and usd["unit_price"] > eur["unit_price"]


def test_unknown_sku_is_404(examples_server):
    resp = requests.get(f"{examples_server.url}/prices/NO-SUCH-SKU?currency=EUR", timeout=10)
    assert resp.status_code == 404
    assert resp.json() == {"error": "unknown_sku", "sku": "NO-SUCH-SKU", "reason": "unknown sku"}


def test_unpriced_currency_is_not_reported_as_unknown_sku(examples_server):
    resp = requests.get(f"{examples_server.url}/prices/SKU2006-001?currency=JPY", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["reason"] == "unknown currency"


@pytest.mark.parametrize("query, pointer", [("currency=eur", "/query/currency"),
                                            ("currency=EUR&discount=1", "/query")])
def test_bad_query_is_422(examples_server, query, pointer):
    resp = requests.get(f"{examples_server.url}/prices/SKU2006-001?{query}", timeout=10)
    assert resp.status_code == 422
    assert resp.headers["Content-Type"] == PROBLEM
    assert pointer in pointers(resp)


# pos-sale

def test_sale_gets_a_document_number(examples_server):
    resp = requests.post(f"{examples_server.url}/pos/sales", json=a_sale("sale-happy-1"), timeout=10)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["sale_id"] == "sale-happy-1"
    assert re.fullmatch(r"BO-store-7-\d{6}", body["document_number"])


def test_repeated_sale_keeps_its_document_number(examples_server):
    first = requests.post(f"{examples_server.url}/pos/sales", json=a_sale("sale-retry-1"), timeout=10)
    again = requests.post(f"{examples_server.url}/pos/sales", json=a_sale("sale-retry-1"), timeout=10)
    other = requests.post(f"{examples_server.url}/pos/sales", json=a_sale("sale-retry-2"), timeout=10)
    assert first.status_code == again.status_code == other.status_code == 201
    assert again.json()["document_number"] == first.json()["document_number"]
    assert other.json()["document_number"] != first.json()["document_number"]


def test_underpaid_sale_is_422(examples_server):
    sale = a_sale("sale-short-1", paid=100.00)
    resp = requests.post(f"{examples_server.url}/pos/sales", json=sale, timeout=10)
    assert resp.status_code == 422
    assert resp.json() == {"error": "rejected_by_back_office", "reason": "payment does not cover the total"}


def test_sale_without_payments_is_422_problem(examples_server):
    sale = a_sale("sale-invalid-1")
    del sale["payments"]
    resp = requests.post(f"{examples_server.url}/pos/sales", json=sale, timeout=10)
    assert resp.status_code == 422
    assert resp.headers["Content-Type"] == PROBLEM
    assert "/body" in pointers(resp)


# stripe-invoice-to-erp

def an_invoice_event(**changes) -> bytes:
    """The corpus invoice.paid event with a fresh event id and invoice id."""
    event = json.loads(INVOICE_PAID)
    n = next(_ids)
    event.update(id=f"evt_hookline_test_{n}", **changes)
    event["data"]["object"]["id"] = f"in_hookline_test_{n}"
    return json.dumps(event).encode()


def invoice_of(body: bytes) -> str:
    return json.loads(body)["data"]["object"]["id"]


def post_stripe(server, body: bytes, secret=STRIPE_SECRET, age_s=0):
    """POST ``body`` signed as Stripe signs it, by the stripe library itself."""
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                               timestamp=int(time.time()) - age_s)
    return requests.post(f"{server.url}/hooks/stripe/invoices", data=body, timeout=10,
                         headers={"Content-Type": "application/json", "Stripe-Signature": header})


def erp_payment(demo, invoice: str) -> requests.Response:
    return requests.get(f"{demo.url}/erp/payments/{invoice}", headers=ERP_AUTH, timeout=10)


def wait_for_payment(demo, invoice: str, timeout: float = 15.0) -> dict:
    """What the demo ERP booked for ``invoice``, once the delivery worker has sent it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = erp_payment(demo, invoice)
        if resp.status_code == 200:
            return resp.json()
        assert resp.status_code == 404, resp.text
        time.sleep(0.1)
    raise AssertionError(f"no payment for {invoice} reached the ERP within {timeout:.0f} s")


def test_corpus_invoice_is_acknowledged_then_booked_in_the_background(examples_server, demo_destination):
    resp = post_stripe(examples_server, INVOICE_PAID)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"received": True, "invoice": "in_1KJqKBJDPojXS6LNJbvLUgEy"}
    booked = wait_for_payment(demo_destination, "in_1KJqKBJDPojXS6LNJbvLUgEy")
    assert re.fullmatch(r"pay-\d+", booked.pop("payment_id"))
    assert booked == {"deliveries": 1, "payment": {
        "event": "evt_1KJrGtJDPojXS6LN15fcthM3", "invoice": "in_1KJqKBJDPojXS6LNJbvLUgEy",
        "number": "60229DE7-0007", "customer": "cus_JsuO3bmrj0QlAw", "amount_paid": 0,
        "currency": "usd", "paid_at": 1642649110,
        "lines": [{"description": "1 × Free tier (at $0.00 / month)", "amount": 0}]}}


def test_repeated_invoice_event_gets_the_first_answer_and_is_booked_once(examples_server, demo_destination):
    body = an_invoice_event()
    first = post_stripe(examples_server, body)
    again = post_stripe(examples_server, body, age_s=1)     # Stripe signs each retry anew
    assert first.status_code == again.status_code == 200, again.text
    assert again.content == first.content
    wait_for_payment(demo_destination, invoice_of(body))
    time.sleep(1.0)                              # two lease polls: a second job would have been sent by now
    assert wait_for_payment(demo_destination, invoice_of(body))["deliveries"] == 1


def test_badly_signed_invoice_events_are_401_and_book_nothing(examples_server, demo_destination):
    wrong, stale, unsigned = an_invoice_event(), an_invoice_event(), an_invoice_event()
    refused = {"no-match": post_stripe(examples_server, wrong, secret="whsec_not_the_endpoint_secret"),
               "stale-timestamp": post_stripe(examples_server, stale, age_s=600),
               "missing-header": requests.post(f"{examples_server.url}/hooks/stripe/invoices", data=unsigned,
                                               headers={"Content-Type": "application/json"}, timeout=10)}
    for reason, resp in refused.items():
        assert resp.status_code == 401, resp.text
        assert resp.headers["Content-Type"] == PROBLEM
        assert resp.json()["reason"] == reason
        assert STRIPE_SECRET not in resp.text
    time.sleep(1.0)                              # two lease polls: a job would have been sent by now
    for body in (wrong, stale, unsigned):
        assert erp_payment(demo_destination, invoice_of(body)).status_code == 404


def test_other_stripe_event_types_are_422(examples_server):
    resp = post_stripe(examples_server, an_invoice_event(type="invoice.payment_failed"))
    assert resp.status_code == 422
    assert resp.headers["Content-Type"] == PROBLEM
    assert "/body/type" in pointers(resp)


# a destination that is down

@pytest.fixture(scope="module")
def server_without_erp(demo_destination):
    env = {**demo_env(demo_destination.url), "ERP_URL": f"http://127.0.0.1:{free_port()}/erp"}
    proc = start_hookline([ROOT / "pipelines"], env=env)
    yield proc
    proc.stop()


def test_destination_down_is_502_problem(server_without_erp):
    resp = post_order(server_without_erp, an_order())
    assert resp.status_code == 502
    assert resp.headers["Content-Type"] == PROBLEM
    problem = resp.json()
    assert problem["status"] == 502 and problem["type"].endswith("/bad-gateway")
    assert problem["run_id"]
    for leak in ("Traceback", 'File "', "demo-erp-token", "127.0.0.1"):
        assert leak not in resp.text


def test_stripe_is_answered_while_the_erp_is_down(server_without_erp):
    resp = post_stripe(server_without_erp, an_invoice_event())
    assert resp.status_code == 200, resp.text
    assert resp.json()["received"] is True
