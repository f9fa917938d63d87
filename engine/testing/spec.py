"""The one spec of the pipeline test format (``NAME.test.yaml``): it drives the
shape check of test files, their editor schema (``hookline schema --tests`` →
``schemas/pipeline-test.schema.json``) and the key table of docs/testing.md.

    >>> schema = tests_schema()
    >>> sorted(schema["required"]), schema["properties"]["tests"]["minItems"]
    (['pipeline', 'tests'], 1)
"""
from __future__ import annotations

import json

from dsl.spec import DRAFT, METHODS, PIPELINE_NAME, doc, strict

FAILURES = ("timeout", "unreachable")
OUTCOMES = ("done", "dead")
ANY = {}      # any JSON value

_HEADERS = {"type": "object", "additionalProperties": {"type": "string"}}
_STATUS = {"type": "integer", "minimum": 100, "maximum": 599}

ANSWER = strict({
    "status": doc(_STATUS | {"default": 200}, "Status the destination answers (default 200)."),
    "headers": doc(_HEADERS, "Response headers (`Content-Type: application/json` unless `raw` is given)."),
    "body": doc(ANY, "Response body, sent as JSON."),
    "raw": doc({"type": "string"}, "Response body sent as this text, instead of `body`."),
    "fail": doc({"type": "string", "enum": list(FAILURES)},
                "Instead of answering: `timeout` (no answer in time) or `unreachable`."),
})

MOCK = strict({
    "match": doc(strict({
        "method": doc({"type": "string", "enum": list(METHODS)}, "The call's method (default: any)."),
        "url": doc({"type": "string", "minLength": 1},
                   "The call's URL as the step builds it; without a `?` it matches any query string."),
    }, required=["url"]), "Which outbound calls this mock answers."),
    "respond": doc(ANSWER, "The answer to every matching call."),
    "fail": doc({"type": "string", "enum": list(FAILURES)},
                "Every matching call fails: `timeout` or `unreachable` (no time passes)."),
    "responses": doc({"type": "array", "minItems": 1, "items": ANSWER},
                     "Answers for successive matching calls (each like `respond`, or `{fail: …}`); "
                     "the last one repeats."),
}, required=["match"])

REQUEST = strict({
    "method": doc({"type": "string", "enum": [*METHODS, "HEAD", "OPTIONS"]},
                  "HTTP method (default: the pipeline's method when it has one, else POST)."),
    "path": doc({"type": "string", "pattern": "^/"},
                "Request target, `/path?query` (default: the pipeline's path, when it has no `{param}`)."),
    "headers": doc(_HEADERS, "Request headers (`Content-Type: application/json` with `body`)."),
    "body": doc(ANY, "Request body, sent as JSON."),
    "body_file": doc({"type": "string", "minLength": 1},
                     "Send this file's bytes as the body (relative to the test file); `Content-Type` from "
                     "its extension (`.json`, `.xml`) unless `headers` give one."),
    "raw": doc({"type": "string"}, "Send this text as the body, as it is."),
    "sign": doc(strict({"secret": doc({"type": "string", "minLength": 1},
                                      "The secret, as the pipeline's `secrets` hold it.")},
                       required=["secret"]),
                "Sign the request as the pipeline's `receive.verify` preset expects, with this secret."),
})

EXPECT = strict({
    "status": doc(_STATUS, "The response status."),
    "headers": doc(_HEADERS, "Response headers that must be present with these values (names in any case)."),
    "body": doc(ANY, "The whole response body (JSON, or text when the response is not JSON)."),
    "body_contains": doc(ANY, "Part of the response body: every key given must be there with this value "
                              "(recursively); a list must have as many items, each containing what is given; "
                              "a text must contain the text given."),
    "calls": doc({"type": "array", "items": strict({
        "method": doc({"type": "string"}, "The call's method."),
        "url": doc({"type": "string"}, "The call's full URL."),
        "headers": doc(_HEADERS, "Headers the call must carry (names in any case)."),
        "body": doc(ANY, "The call's body: JSON, or the text sent (XML, a form)."),
        "body_contains": doc(ANY, "Part of the call's body, as `expect.body_contains`."),
    })}, "Every outbound call the request made, in order (only the keys given are compared)."),
    "jobs": doc({"type": "array", "items": strict({
        "branch": doc({"type": "string"}, "The async branch the job runs."),
    }, required=["branch"])}, "The jobs the request enqueued for async branches, in order (`[]`: none)."),
    "deliveries": doc({"type": "object", "additionalProperties": {"type": "string", "enum": list(OUTCOMES)}},
                      "Deliver the enqueued jobs against the mocks (retries on a simulated clock) and "
                      "expect each branch to end `done` or `dead`."),
})

CASE = strict({
    "name": doc({"type": "string", "minLength": 1}, "What the test shows; printed when it fails."),
    "request": doc(REQUEST, "The request sent to the pipeline."),
    "mocks": doc({"type": "array", "items": MOCK},
                 "Answers for outbound calls; a call no mock matches fails the test."),
    "expect": doc(EXPECT, "What must come out; only the keys given are checked."),
}, required=["name", "request", "expect"])


def tests_schema() -> dict:
    """The draft-07 JSON Schema of a pipeline test file."""
    head = {"$schema": DRAFT, "$id": "https://hookline.dev/schemas/pipeline-test.schema.json",
            "title": "Hookline pipeline tests",
            "description": "Tests of one pipeline, run offline by `hookline test`."}
    return head | strict({
        "pipeline": doc({"type": "string", "pattern": PIPELINE_NAME},
                        "The pipeline under test, by name (found among the pipelines beside this file)."),
        "env": doc({"type": "object", "additionalProperties": {"type": "string"}},
                   "Values for the pipeline's `${env:NAME}` (the environment is not read)."),
        "tests": doc({"type": "array", "minItems": 1, "items": CASE}, "The tests, run in order."),
    }, required=["pipeline", "tests"])


def tests_schema_text() -> str:
    """The committed form (stable key order, trailing newline)."""
    return json.dumps(tests_schema(), indent=2, ensure_ascii=False) + "\n"
