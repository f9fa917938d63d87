"""``hookline run``: one request through a pipeline offline, each step's output
and time printed — from a test file's test (its mocks) or from a pipeline file
and options (calls answered by an echo). Runs the real command."""
from __future__ import annotations

import re
import subprocess

from conftest import HOOKLINE, ROOT


def hookline(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, "run", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_a_test_files_test_shows_every_step_its_output_and_time():
    result = hookline("pipelines/order-to-erp.test.yaml", "--test", "an out-of-stock line is a 409 naming it")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    steps = re.findall(r"^step (\w+) \((\w+)\) \d+\.\d\d ms$", out, re.M)
    assert steps == [("order", "transform"), ("stock", "call"), ("decide", "route")]
    assert '"order_id": 820982911946154500' in out          # the transform's output
    assert '"sku": "SKU2006-020"' in out                     # the mock's answer, as the call's output
    assert '{"branch": 0}' in out
    assert re.search(r"^response: 409 in \d+\.\d\d ms$", out, re.M)
    assert '"error": "out_of_stock"' in out.split("response: 409")[1]


def test_the_first_test_by_default():
    result = hookline("pipelines/price-lookup.test.yaml")
    assert result.returncode == 0
    assert "response: 200" in result.stdout and '"unit_price": 89.99' in result.stdout


def test_a_pipeline_file_with_an_echo_destination():
    result = hookline("pipelines/price-lookup.yaml", "--path", "/prices/SKU2006-001?currency=USD",
                      "--env", "PRICING_URL=http://pricing.test")
    assert result.returncode == 0, result.stdout
    assert '"url": "http://pricing.test/prices/SKU2006-001?currency=USD"' in result.stdout
    assert re.search(r"^response: 200 ", result.stdout, re.M)


def test_a_body_and_headers_from_options(tmp_path):
    (tmp_path / "echo.yaml").write_text(
        "pipeline: echo\nreceive: {path: /echo}\n"
        "steps:\n  - {id: seen, transform: '{n: request.body.n, h: request.headers.\"x-a\"}'}\n"
        "respond: {body: steps.seen}\n")
    result = hookline("echo.yaml", "--body", '{"n": 5}', "--header", "X-A: yes", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert 'step seen (transform)' in result.stdout
    assert result.stdout.rstrip().endswith('{"n": 5, "h": "yes"}')


def test_async_branches_are_delivered_and_shown():
    result = hookline("pipelines/stripe-invoice-to-erp.test.yaml", "--test",
                      "an ERP that is down for a while gets the payment once it is back")
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert "async: 1 job(s) enqueued (erp), delivered now:" in out
    assert len(re.findall(r"^async erp: step book \(call\)", out, re.M)) == 4
    assert "    failed: step 'book': destination answered 503" in out
    assert out.rstrip().endswith("async erp: done after 4 attempt(s)")


def test_an_unknown_test_name_exits_2_listing_the_tests():
    result = hookline("pipelines/price-lookup.test.yaml", "--test", "nope")
    assert result.returncode == 2
    assert re.match(r"pipelines/price-lookup\.test\.yaml:\d+:1: bad-test: no test named 'nope' \(there are: "
                    r"a known SKU in euros", result.stdout)


def test_a_pipeline_that_does_not_compile_exits_1(tmp_path):
    (tmp_path / "bad.yaml").write_text("pipeline: bad\nreceive: {path: /b}\nrespond: {body: 'sum_by(@)'}\n")
    result = hookline("bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "bad.yaml:3:18: unknown-function: unknown function sum_by()" in result.stdout


def test_a_bad_header_option_exits_2():
    result = hookline("pipelines/price-list.yaml", "--header", "no colon")
    assert result.returncode == 2
    assert "--header 'no colon': write 'Name: value'" in result.stdout
