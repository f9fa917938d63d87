"""OpenAPI 3.1 from the pipelines: ``hookline openapi`` and ``<admin prefix>/openapi.json``.

The document is checked by openapi-spec-validator, and schemathesis sends what it generates
from it to the served example pipelines (wired to the demo destination): every response must
agree with the document (status, content type, headers, body schema) and invalid data must be
refused. A 500 is never documented, so ``status_code_conformance`` fails on it; the 5xx a
pipeline declares itself (``502 erp_rejected`` when the demo ERP refuses fuzzed data) are
documented answers, so schemathesis' blanket ``not_a_server_error`` check is left out.
``positive_data_acceptance`` is left out too: XML, form and text bodies are mapped to JSON
before the schema check (the document says so per media type), so data valid in their
encoding is not the JSON the schema describes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from conftest import HOOKLINE, ROOT, demo_env, start_hookline

TOKEN = "openapi-test-admin-token-0123"
ST = [str(Path(sys.executable).parent / "st")]
CHECKS = ["--checks", "all", "--exclude-checks", "not_a_server_error,positive_data_acceptance"]


def openapi_cli(*paths, env=None):
    return subprocess.run([*HOOKLINE, "openapi", *map(str, paths)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)


@pytest.fixture(scope="module")
def examples_doc():
    result = openapi_cli(ROOT / "pipelines")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def served(demo_destination):
    proc = start_hookline([ROOT / "pipelines"], env={**demo_env(demo_destination.url),
                                                     "HOOKLINE_ADMIN_TOKEN": TOKEN},
                          extra=("--admin-prefix", "/_hookline"))
    yield proc
    proc.stop()


def test_the_examples_document_is_valid_openapi_3_1(examples_doc):
    validate(examples_doc)
    assert examples_doc["openapi"] == "3.1.0"


def test_every_route_and_method_is_an_operation(examples_doc):
    paths = examples_doc["paths"]
    assert set(paths) >= {"/hooks/shopify/{shop}/orders", "/hooks/stripe/invoices", "/invoices/ubl",
                          "/pos/sales", "/price-list", "/prices/{sku}"}
    assert "post" in paths["/hooks/shopify/{shop}/orders"]
    assert "get" in paths["/prices/{sku}"]


def test_responses_follow_what_the_pipeline_uses(examples_doc):
    orders = examples_doc["paths"]["/hooks/shopify/{shop}/orders"]["post"]
    assert {"200", "409", "502", "504", "413", "415", "422", "400"} <= set(orders["responses"])
    assert "401" not in orders["responses"]                  # no verify, no auth
    stripe = examples_doc["paths"]["/hooks/stripe/invoices"]["post"]
    assert "401" in stripe["responses"]                      # receive.verify
    problem = orders["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert orders["responses"]["200"]["headers"] == {"X-Reservation-Id": {"schema": {"type": "string"}}}


def test_request_bodies_carry_the_validate_schema(examples_doc):
    orders = examples_doc["paths"]["/hooks/shopify/{shop}/orders"]["post"]
    ref = orders["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = examples_doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    source = json.loads((ROOT / "pipelines/schemas/shopify-order.schema.json").read_text())
    assert schema["required"] == source["required"]
    assert "text/plain" not in orders["requestBody"]["content"]       # an object is never text
    ubl = examples_doc["paths"]["/invoices/ubl"]["post"]["requestBody"]["content"]
    assert set(ubl) == {"application/xml", "text/xml"}                # receive.content_types


def test_parameters_security_and_internal_refs(tmp_path):
    (tmp_path / "p.yaml").write_text("""
pipeline: guarded
receive:
  path: /things/{kind}
  methods: [GET, PUT]
  auth: {bearer: ["${env:GUARD_TOKEN}"]}
  rate_limit: {per_s: 5}
validate:
  params: {type: object, properties: {kind: {enum: [a, b]}}}
  query: {type: object, required: [n], properties: {n: {type: integer}, tag: {type: string}}}
  body:
    type: object
    properties: {item: {$ref: "#/$defs/item"}}
    $defs: {item: {type: object, required: [sku], properties: {sku: {type: string}}}}
respond: {status: 201, body: "request.body"}
""")
    result = openapi_cli(tmp_path, env={**__import__("os").environ, "GUARD_TOKEN": "x" * 20})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    validate(doc)
    get = doc["paths"]["/things/{kind}"]["get"]
    params = {(p["in"], p["name"]): p for p in get["parameters"]}
    assert params["path", "kind"]["required"] and params["query", "n"]["required"]
    assert not params["query", "tag"]["required"]
    assert "requestBody" not in get and "requestBody" in doc["paths"]["/things/{kind}"]["put"]
    assert {"401", "429", "201"} <= set(get["responses"])
    assert doc["components"]["securitySchemes"] == {"guarded-bearer": {"type": "http", "scheme": "bearer"}}
    assert get["security"] == [{"guarded-bearer": []}]
    body = doc["components"]["schemas"]["guarded.body"]
    assert body["properties"]["item"]["$ref"] == "#/components/schemas/guarded.body/$defs/item"


def test_a_pipeline_with_errors_prints_diagnostics_not_a_document(tmp_path):
    (tmp_path / "bad.yaml").write_text("pipeline: bad\nreceive: {path: /x}\nrespond: {status: 200, body: 'a.('}\n")
    result = openapi_cli(tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "bad.yaml:3:" in result.stderr and "bad-expression" in result.stderr


def test_admin_endpoint_serves_the_same_document_behind_the_token(served, examples_doc):
    url = f"{served.url}/_hookline/openapi.json"
    assert requests.get(url, timeout=10).status_code == 401
    resp = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == examples_doc


def run_schemathesis(location, base_url, *extra):
    return subprocess.run([*ST, "run", str(location), "--url", base_url, "-H", f"Authorization: Bearer {TOKEN}",
                           *CHECKS, "--max-examples", "25", "--phases", "examples,coverage,fuzzing",
                           "--seed", "1", "--workers", "1", *extra],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_schemathesis_finds_no_contradiction_and_no_500(served):
    result = run_schemathesis(f"{served.url}/_hookline/openapi.json", served.url)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "passed" in result.stdout


def test_schemathesis_would_catch_an_undocumented_answer(served, tmp_path):
    """The check above can fail: the same document without the 422 answers is contradicted."""
    doc = requests.get(f"{served.url}/_hookline/openapi.json",
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    for item in doc["paths"].values():
        for op in item.values():
            op["responses"].pop("422", None)
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    result = run_schemathesis(tmp_path / "doc.json", served.url, "--include-path", "/pos/sales")
    assert result.returncode != 0
    assert "Undocumented status code" in result.stdout, result.stdout[-3000:]
