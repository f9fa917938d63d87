"""README.md works as written against the `make run` set-up, and shows what really happens.

* Every ``curl`` command of the ```sh / ```console blocks runs in ``bash`` with the real
  ``curl`` from the repository root (so ``@tests/data/...`` resolves as in the README),
  after the lines before it in its block (such as computing a Stripe signature into
  ``$sig``), against ``hookline serve pipelines`` wired to the demo destination, with only
  ``localhost:8080`` rewritten to the test server's address. What it prints must be the
  answer shown under it: status, every header but ``Date`` in order, and the body (dates
  and ids may differ; ``…`` stands for the rest). How the blocks are read and compared is
  in tests/shell_examples.py, which tests/test_docs.py uses for docs/ too.
* Each row of the "When things go wrong" table is sent (a recipe per row, below) and must
  get the row's status and every piece of JSON the row shows.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import shutil
import time

import pytest
import requests
import yaml

import dsl
import shell_examples
from conftest import CORPUS, ROOT, demo_env, start_demo_destination, start_hookline

README = ROOT / "README.md"
ORDER = CORPUS / "shopify" / "orders.create.json"
INVOICE = CORPUS / "stripe" / "invoice.paid.json"
UBL = CORPUS / "xml" / "ubl-tc434-example1.xml"
EXAMPLES = shell_examples.examples(README, ROOT)
COMMANDS = [ex.command for ex in EXAMPLES]


def test_readme_has_a_curl_example_per_example_pipeline():
    for file in dsl.pipeline_files([ROOT / "pipelines"]):
        pattern = url_pattern(yaml.safe_load(file.read_text())["receive"]["path"])
        assert any(pattern.search(c + " ") for c in COMMANDS), f"README has no curl example for {file.name}"


def url_pattern(path: str) -> re.Pattern:
    """``/prices/{sku}`` → a regex for ``localhost:8080/prices/<anything>`` then ``?``, quote or space."""
    return re.compile("localhost:8080" + re.sub(r"\\\{\w+\\\}", "[^/?' ]+", re.escape(path)) + "[?' ]")


def test_the_readme_pipelines_compile_without_a_diagnostic():
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), re.M | re.S)
    assert blocks
    for text in blocks:
        pipeline, problems = dsl.compile_text(text, "README.yaml", env=demo_env("http://127.0.0.1:9"))
        assert [str(d) for d in problems] == [] and pipeline is not None


def test_every_readme_example_shows_its_answer():
    assert len(EXAMPLES) >= 7 and all(ex.answer for ex in EXAMPLES), \
        [ex.id for ex in EXAMPLES if not ex.answer]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_print_what_the_readme_shows(examples_server):
    """In README order, on one server: an example may depend on an earlier one (res-1 is
    the demo ERP's first reservation)."""
    address = examples_server.url.removeprefix("http://")
    failures = []
    for ex in EXAMPLES:
        got = shell_examples.run(ex, address, ROOT)
        failures += [f"{ex.id}: {p}" for p in shell_examples.differences(ex, got)]
    assert failures == []


# --- the "When things go wrong" table -------------------------------------------------------------

def table_rows(text: str) -> list[tuple[str, int, str]]:
    """``(request, status, body)`` for each row of the table after **When things go wrong**."""
    part = text.split("**When things go wrong**", 1)[1].split("\n\n", 2)[1]
    rows = [line.split(" | ") for line in part.splitlines() if line.startswith("| ") and "---" not in line]
    return [(r[0].removeprefix("| "), int(r[1]), r[2].removesuffix(" |")) for r in rows[1:]]


def fragments(cell: str) -> list[list[str]]:
    """The JSON shown in a body cell (backticked, starting with ``{`` or ``"``), each cut at ``…``."""
    return [[p for p in f.split("…") if p] for f in re.findall(r"`([{\"][^`]*)`", cell)]


_order_ids = itertools.count(1)


def an_order(**changes) -> bytes:
    order = json.loads(ORDER.read_text())
    order["id"] = 8_000_000_000 + next(_order_ids)    # a new order id: a new Idempotency-Key for the ERP
    order.update(changes)
    return json.dumps({k: v for k, v in order.items() if v is not None}).encode()


def signed_invoice(url: str, when: int | None = None, secret: str = "whsec_demo_stripe_signing_secret"):
    body = INVOICE.read_bytes()
    t = int(time.time()) if when is None else when
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return requests.post(url + "/hooks/stripe/invoices", data=body, timeout=10,
                         headers={"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={sig}"})


def _post(url, path, data, ctype="application/json", **kw):
    return requests.post(url + path, data=data, headers={"Content-Type": ctype, **kw}, timeout=10)


def _sale(paid: float) -> bytes:
    return json.dumps({"sale_id": "S-2001", "store_id": "store-1", "till_id": "till-3",
                       "sold_at": "2026-04-02T10:15:00Z",
                       "lines": [{"sku": "SKU2006-001", "qty": 2, "unit_price": 89.99}],
                       "payments": [{"method": "card", "amount": paid}]}).encode()


_OUT = {**json.loads(ORDER.read_text())["line_items"][0], "id": 1, "sku": "OUT-OF-STOCK-1", "quantity": 1}
# Each row of the table, by the start of its first cell: how to send that request. The rows that
# need the demo destination down come last; the test stops it before them.
RECIPES = {
    "an order with a line the ERP cannot cover": lambda u: _post(u, SHOP, an_order(
        line_items=[*json.loads(ORDER.read_text())["line_items"], _OUT])),
    "an order without `line_items`": lambda u: _post(u, SHOP, an_order(line_items=None)),
    "`/prices/SKU2006-001?currency=eur`": lambda u: requests.get(u + "/prices/SKU2006-001?currency=eur", timeout=10),
    "`/prices/NO-SUCH-SKU`": lambda u: requests.get(u + "/prices/NO-SUCH-SKU", timeout=10),
    "the UBL invoice sent as": lambda u: _post(u, "/invoices/ubl", UBL.read_bytes()),
    "`/price-list` with `Accept: text/html`": lambda u: requests.get(u + "/price-list", timeout=10,
                                                                     headers={"Accept": "text/html"}),
    "a sale whose payments are less": lambda u: _post(u, "/pos/sales", _sale(100)),
    "a Stripe event without a valid": lambda u: signed_invoice(u, when=int(time.time()) - 301),
    "a Stripe event while the ERP is down": signed_invoice,
    "an order, price or sale request while the demo destination is down": lambda u: _post(u, SHOP, an_order()),
}
DESTINATION_DOWN = ("a Stripe event while the ERP is down", "an order, price or sale request while")
SHOP = "/hooks/shopify/demo-shop/orders"


def test_every_row_of_the_failure_table_has_a_recipe():
    rows = [request for request, _, _ in table_rows(README.read_text())]
    assert len(rows) == len(RECIPES) and all(any(r.startswith(k) for k in RECIPES) for r in rows), rows


def test_the_failure_table_shows_the_real_statuses_and_bodies():
    """Each row's request, sent to ``make run``'s set-up, gets the row's status, and its body
    holds every JSON piece the row shows. The demo destination is stopped for the last rows."""
    demo = start_demo_destination()
    server = start_hookline([ROOT / "pipelines"], env=demo_env(demo.url))
    failures = []
    try:
        for request, status, body in table_rows(README.read_text()):
            if request.startswith(DESTINATION_DOWN) and demo.proc.poll() is None:
                demo.stop()
            resp = next(r for k, r in RECIPES.items() if request.startswith(k))(server.url)
            if resp.status_code != status:
                failures.append(f"{request[:50]}: status {resp.status_code}, not {status}: {resp.text[:300]}")
            for pieces in fragments(body):
                at = 0
                for piece in pieces:
                    at = resp.text.find(piece, at)
                    if at < 0:
                        failures.append(f"{request[:50]}: {piece!r} is not in {resp.text[:400]}")
                        break
    finally:
        server.stop()
        if demo.proc.poll() is None:
            demo.stop()
    assert failures == []
