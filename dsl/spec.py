"""The one spec of the DSL: it drives the compiler's shape check, the editor
schema (``hookline schema`` → ``schemas/pipeline.schema.json``) and the docs.

Every key carries a ``description`` (and ``markdownDescription`` for VS Code);
step kinds contribute their own fragment (``dsl/steps/<kind>.py: SCHEMA``).

    >>> schema = pipeline_schema()
    >>> schema["$schema"], sorted(schema["required"])
    ('http://json-schema.org/draft-07/schema#', ['pipeline', 'receive'])
"""
from __future__ import annotations

import json

DRAFT = "http://json-schema.org/draft-07/schema#"
METHODS = ("POST", "GET", "PUT", "PATCH", "DELETE")
STEP_ID = r"^[A-Za-z_][A-Za-z0-9_]*$"
PIPELINE_NAME = r"^[a-z0-9][a-z0-9-]*$"
DEFAULT_MAX_BODY = 1_048_576
DEFAULT_DEDUPE_TTL = 86_400
BRANCH_ID = r"^[a-z0-9][a-z0-9_-]*$"
TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"
HISTORY_DEFAULTS = {"keep": 1000, "max_age": "7d", "body_bytes": 4096}
DURATION = r"^[1-9][0-9]{0,8}[smhd]$"
RETRY_DEFAULTS = {"max_attempts": 12, "initial_s": 1, "max_s": 3600, "max_age_s": 259_200}


def doc(schema: dict, text: str, **extra) -> dict:
    """Return ``schema`` with a description (plain and markdown) and extra keywords."""
    return {**schema, "description": text, "markdownDescription": text, **extra}


def expression(text: str) -> dict:
    """An expression-valued key: a JMESPath string evaluated over the context."""
    return doc({"type": "string", "minLength": 1},
               f"{text}\n\nA JMESPath expression over the context `{{request, steps}}`.")


def strict(properties: dict, required=(), **extra) -> dict:
    """An object that refuses unknown keys (typos must not pass silently)."""
    out = {"type": "object", "additionalProperties": False, "properties": properties, **extra}
    if required:
        out["required"] = list(required)
    return out


RESPOND = doc(strict({
    "status": doc({"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
                  "HTTP status code of the response."),
    "headers": doc({"type": "object", "additionalProperties": expression("Header value.")},
                   "Response headers: name → expression; the value is sent as text."),
    "body": expression("Response body: serialised as the client's `Accept` asks (JSON by default)."),
    "formats": doc({"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"type": "string", "enum": ["json", "xml", "text", "csv"]}},
                   "Formats the body may be sent in, in order of preference (default json, xml, text, csv); "
                   "no acceptable one → 406."),
    "content_type": doc({"type": "string", "minLength": 3},
                        "Force this Content-Type (no negotiation); the body is written as XML when it "
                        "ends in xml, as text for text/*, else as JSON."),
}), "The HTTP response. Without `body` the response has no body.",
    defaultSnippets=[{"label": "respond", "body": {"status": 200, "body": "${1:steps.order}"}}])

_VERIFY_TEXT = {
    "preset": "Which provider's signature rules to apply.",
    "secrets": "Signing secrets, one or more (during rotation); only `${env:NAME}` or `${file:PATH}`.",
    "algorithm": "hmac: the HMAC hash.",
    "encoding": "hmac: how the signature is written.",
    "separator": "hmac: text between the signed parts.",
}


def verify_schema() -> dict:
    """The `receive.verify` block, from dsl/verify.py's own spec, with descriptions."""
    from .verify import schema
    out = schema()
    out["additionalProperties"] = False
    for name, sub in out["properties"].items():
        text = sub.get("description") or _VERIFY_TEXT.get(name, name)
        out["properties"][name] = doc(sub, text)
    for rule in out.get("allOf", []):
        for name, sub in rule.get("if", {}).get("properties", {}).items():
            rule["if"]["properties"][name] = doc(sub, "The options allowed for this preset.")
    return doc(out, "Check the provider's signature over the raw body before anything else; 401 when it fails.",
               defaultSnippets=[{"label": "verify", "body": {"preset": "${1|github,stripe,shopify,slack,"
                                                          "standard-webhooks,twilio,hmac|}",
                                                          "secrets": ["\\${env:${2:WEBHOOK_SECRET}}"]}}])


RECEIVE = doc(strict({
    "path": doc({"type": "string", "pattern": r"^/[^\s?#]*$"},
                "URL path of the endpoint; `{name}` is a path parameter, seen as `request.params.name`.",
                examples=["/hooks/orders/{shop}"]),
    "methods": doc({"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"type": "string", "enum": list(METHODS)}, "default": ["POST"]},
                   "HTTP methods the endpoint accepts (default `[POST]`); others get 405."),
    "max_body_bytes": doc({"type": "integer", "minimum": 1, "default": DEFAULT_MAX_BODY},
                          "Largest accepted request body in bytes (default 1 MiB); larger gets 413."),
    "content_types": doc({"type": "array", "minItems": 1, "uniqueItems": True,
                          "items": {"type": "string", "pattern": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+$"}},
                         "Media types the endpoint accepts (default: JSON, XML, forms and text/plain); others "
                         "get 415. `*/*` (or any type Hookline cannot parse) opts in to raw bodies.",
                         examples=[["application/json"], ["application/xml", "text/xml"]]),
    "cors": doc(strict({
        "origins": doc({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                       "Allowed origins, e.g. `https://shop.example`; `*` allows any."),
        "methods": doc({"type": "array", "items": {"type": "string", "enum": list(METHODS)}},
                       "Methods a browser may use (default: the pipeline's methods)."),
        "headers": doc({"type": "array", "items": {"type": "string", "minLength": 1}},
                       "Request headers a browser may send (default: Content-Type)."),
        "max_age_s": doc({"type": "integer", "minimum": 0, "default": 600},
                         "How long a browser may cache the preflight answer, in seconds (default 600)."),
    }, required=["origins"]), "Let browsers on other origins call this endpoint (CORS, with preflight)."),
    "auth": doc(strict({
        "bearer": doc({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                      "Accepted bearer tokens (`Authorization: Bearer <token>`); `${env:…}`/`${file:…}`."),
        "basic": doc({"type": "array", "minItems": 1, "items": strict({
            "user": doc({"type": "string", "minLength": 1}, "User name."),
            "password": doc({"type": "string", "minLength": 1}, "Password; `${env:…}`/`${file:…}`."),
        }, required=["user", "password"])}, "Accepted HTTP Basic user/password pairs."),
        "api_key": doc(strict({
            "header": doc({"type": "string", "minLength": 1}, "Header that carries the key."),
            "query": doc({"type": "string", "minLength": 1}, "Query parameter that carries the key."),
            "keys": doc({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                        "Accepted keys; `${env:…}`/`${file:…}`."),
        }, required=["keys"], oneOf=[{"required": ["header"]}, {"required": ["query"]}]),
            "An API key in a header or a query parameter (one of the two)."),
    }, oneOf=[{"required": ["bearer"]}, {"required": ["basic"]}, {"required": ["api_key"]}]),
        "Require credentials: exactly one of bearer, basic, api_key; 401 without them."),
    "allow_ips": doc({"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}},
                     "Client addresses allowed (IPs or CIDR networks); others get 403. Behind a proxy, "
                     "start the server with `--trusted-proxies`."),
    "rate_limit": doc(strict({
        "per_s": doc({"type": "number", "exclusiveMinimum": 0}, "Sustained requests per second per key."),
        "burst": doc({"type": "integer", "minimum": 1}, "Requests allowed at once (default: per_s, at least 1)."),
        "key": expression("What a bucket is per (default: the client address); sees "
                          "`request.headers` and `request.client`."),
    }, required=["per_s"]), "Token bucket; over the limit → 429 with Retry-After."),
    "verify": {"$ref": "#/definitions/verify"},
    "dedupe": doc(strict({
        "key": expression("The delivery id, e.g. `request.headers.\"webhook-id\"`; null means no dedupe."),
        "ttl_s": doc({"type": "integer", "minimum": 1, "default": DEFAULT_DEDUPE_TTL},
                     "How long a delivery id is remembered, in seconds (default 86400)."),
    }, required=["key"]), "Answer a repeated delivery with the first delivery's response and run nothing twice."),
    "history": {"$ref": "#/definitions/history"},
}, required=["path"]), "Where and how the pipeline receives requests.")

HISTORY = doc({"type": ["boolean", "object"], "additionalProperties": False, "properties": {
    "keep": doc({"type": "integer", "minimum": 1, "default": HISTORY_DEFAULTS["keep"]},
                "Runs kept for this pipeline, newest first (default 1000); older ones are deleted."),
    "max_age": doc({"type": ["integer", "string"], "minimum": 1, "pattern": DURATION,
                    "default": HISTORY_DEFAULTS["max_age"]},
                   "How long a run is kept: seconds, or a number with s, m, h or d (default `7d`)."),
    "body_bytes": doc({"type": "integer", "minimum": 0, "default": HISTORY_DEFAULTS["body_bytes"]},
                      "Bytes kept of the request body, of the response body and of each step's output "
                      "(default 4096); the rest is cut."),
    "redact_headers": doc({"type": "array", "uniqueItems": True,
                           "items": {"type": "string", "pattern": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"}},
                          "More request headers whose values are never recorded (Authorization, Cookie, "
                          "Proxy-Authorization, every signature header and the API key header never are)."),
}}, "Run history (`hookline runs`, the admin endpoints): each request with its steps, calls, response "
    "and deliveries, recorded in the store. On by default; `false` records nothing.",
    examples=[False, {"keep": 1000, "max_age": "7d", "body_bytes": 8192, "redact_headers": ["x-api-key"]}])

SCHEMA_SOURCE = doc({"type": ["object", "boolean"]},
                    "A JSON Schema, inline, or `{$ref: path/to/schema.json}` relative to this file.",
                    defaultSnippets=[{"label": "$ref", "body": {"$ref": "${1:schemas/x.schema.json}"}}])

VALIDATE = doc(strict({
    "body": doc(SCHEMA_SOURCE, "JSON Schema for the request body; a violation gets 422."),
    "query": doc(SCHEMA_SOURCE, "JSON Schema for the query parameters (an object of strings)."),
    "params": doc(SCHEMA_SOURCE, "JSON Schema for the path parameters (an object of strings)."),
    "headers": doc(SCHEMA_SOURCE, "JSON Schema for the headers (an object, lower-case names)."),
    "formats": doc({"type": "boolean", "default": True},
                   "Check `format` (email, date-time, uuid, ...) under every draft (default true); "
                   "false makes `format` an annotation only."),
}), "JSON Schemas the request must satisfy before any step runs.")


RETRY = doc(strict({
    "max_attempts": doc({"type": "integer", "minimum": 1, "default": RETRY_DEFAULTS["max_attempts"]},
                        "Attempts in all, the first included (default 12); then the job is dead-lettered."),
    "initial_s": doc({"type": "number", "exclusiveMinimum": 0, "default": RETRY_DEFAULTS["initial_s"]},
                     "Backoff before the second attempt, in seconds (default 1); doubles each time, full jitter."),
    "max_s": doc({"type": "number", "exclusiveMinimum": 0, "default": RETRY_DEFAULTS["max_s"]},
                 "Longest backoff between attempts, in seconds (default 3600)."),
    "max_age_s": doc({"type": "number", "exclusiveMinimum": 0, "default": RETRY_DEFAULTS["max_age_s"]},
                     "Give up (dead-letter) once the job is this old, in seconds (default 259200 = 3 days)."),
}), "Retry schedule of this branch: exponential backoff with full jitter.")

TABLES = doc({"type": "object", "propertyNames": {"pattern": TABLE_NAME}, "additionalProperties": doc(strict({
    "values": doc({"type": ["object", "array"]},
                  "The table itself: an object of key → value, or a list of records with `key`."),
    "file": doc({"type": "string", "pattern": r"\.(json|ya?ml|csv)$"},
                "A `.json`, `.yaml` or `.csv` file, relative to the pipeline file, read when the pipeline loads."),
    "key": doc({"type": "string", "minLength": 1},
               "For a list of records: the field holding the key (a CSV file: default its first column)."),
    "value": doc({"type": "string", "minLength": 1},
                 "For a list of records: the field `lookup` returns (default: the whole record; a CSV file "
                 "with two columns: the second)."),
}, oneOf=[{"required": ["values"]}, {"required": ["file"]}]), "One table: `values` inline, or a `file`.")},
    "Lookup tables for `lookup('name', key, default?)`: name → table, loaded once at start-up.",
    defaultSnippets=[{"label": "tables", "body": {"${1:status_codes}": {"values": {"${2:paid}": "${3:P}"}}}}])

ASYNC = doc({"type": "array", "items": strict({
    "id": doc({"type": "string", "pattern": BRANCH_ID}, "Branch id, unique in the pipeline."),
    "description": doc({"type": "string"}, "What the branch is for."),
    "when": expression("Run the branch only when this is true (evaluated before the response)."),
    "steps": {"$ref": "#/definitions/steps"},
    "retry": RETRY,
}, required=["id", "steps"])},
    "Branches that run after the response, each independently, persisted before the acknowledgement.",
    defaultSnippets=[{"label": "async branch", "body": [{"id": "${1:notify}", "steps": [
        {"id": "${2:send}", "call": {"url": "\\${env:${3:CRM_URL}}/events", "body": "request.body"}}]}]}])


def step_schema(kinds) -> dict:
    """The schema of one step: `id`, optional `description`, exactly one kind key."""
    properties = {
        "id": doc({"type": "string", "pattern": STEP_ID},
                  "Unique step id; its output is `steps.<id>`. Letters, digits, `_`."),
        "description": doc({"type": "string"}, "What the step is for."),
    }
    properties.update({kind.KEY: kind.SCHEMA for kind in kinds})
    return strict(properties, required=["id"],
                  oneOf=[{"required": [kind.KEY]} for kind in kinds],
                  defaultSnippets=[kind.SNIPPET for kind in kinds])


def pipeline_schema() -> dict:
    """The draft-07 JSON Schema of a pipeline file."""
    from .steps import KINDS
    head = {"$schema": DRAFT, "$id": "https://hookline.dev/schemas/pipeline.schema.json",
            "title": "Hookline pipeline",
            "description": "A Hookline pipeline: receive → validate → steps → respond."}
    return head | strict({
        "pipeline": doc({"type": "string", "pattern": PIPELINE_NAME},
                        "Pipeline name, unique across the directory: lower-case letters, digits, `-`."),
        "description": doc({"type": "string"}, "What the pipeline does, for people."),
        "receive": RECEIVE,
        "validate": VALIDATE,
        "steps": {"$ref": "#/definitions/steps"},
        "respond": {"$ref": "#/definitions/respond"},
        "async": ASYNC,
        "tables": TABLES,
    }, required=["pipeline", "receive"],
        **{"definitions": {
               "steps": doc({"type": "array", "items": {"$ref": "#/definitions/step"}},
                            "Steps run in order; each step's output is `steps.<id>`."),
               "step": step_schema(KINDS),
               "respond": RESPOND,
               "verify": verify_schema(),
               "history": HISTORY,
           },
           "defaultSnippets": [{"label": "pipeline", "body": {
               "pipeline": "${1:name}", "receive": {"path": "/hooks/${2:name}"},
               "steps": [{"id": "${3:out}", "transform": "${4:request.body}"}],
               "respond": {"status": 200, "body": "steps.${3:out}"}}}]})


def schema_text() -> str:
    """The committed form of the schema (stable key order, trailing newline)."""
    return json.dumps(pipeline_schema(), indent=2, ensure_ascii=False) + "\n"
