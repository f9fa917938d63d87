"""OpenAPI 3.1 from compiled pipelines: ``hookline openapi`` and ``<admin prefix>/openapi.json``.

One path per route, one operation per method. Parameters, request bodies and
their schemas come from ``validate``; responses from what the pipeline can
answer: its declared ``respond`` statuses and formats, and the refusals the
runtime gives for the features it uses (``401`` with ``verify``/``auth``,
``413`` always, ``415`` for a body, ``422`` with ``validate`` or expressions,
``429`` with ``rate_limit``, ``502``/``504`` with sync calls, ``503`` when
the request is stored first). Every refusal is a problem document.

    >>> doc = document([])
    >>> doc["openapi"], doc["paths"]
    ('3.1.0', {})

User schemas are copied into ``components.schemas`` and their internal
``$ref``s (``#/definitions/…``, ``#/$defs/…``) rewritten to point there,
because inside an OpenAPI document ``#`` is the document's root.
"""
from __future__ import annotations

import json
import re

from dsl.steps.call import Call
from dsl.steps.route import Route

__all__ = ["document"]

PROBLEM = "application/problem+json"
_PARSEABLE_DEFAULT = ("application/json", "application/xml", "application/x-www-form-urlencoded", "text/plain")
_NO_BODY_METHODS = {"GET", "HEAD", "DELETE", "OPTIONS"}
_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 406: "Not Acceptable", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An RFC 9457 problem document (docs/errors.md lists every type).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "run_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_ACCEPTED_SCHEMA = {
    "type": "object", "required": ["id"],
    "description": "The request is stored; its async branches are delivered in the background.",
    "properties": {"id": {"type": ["string", "null"], "description": "the delivery id; null when no "
                                                                       "branch's `when` held"}},
}


def document(pipelines, title: str = "Hookline pipelines", version: str = "1") -> dict:
    """The OpenAPI 3.1 document (a JSON-ready dict) for ``pipelines``."""
    components = {"schemas": {"Problem": _PROBLEM_SCHEMA}, "securitySchemes": {}}
    paths: dict = {}
    for pipeline in sorted(pipelines, key=lambda p: p.path):
        item = paths.setdefault(pipeline.path, {})
        schemas = _schemas(pipeline, components["schemas"])
        for method in sorted(pipeline.methods):
            item[method.lower()] = _operation(pipeline, method, schemas, components["securitySchemes"])
    if not components["securitySchemes"]:
        del components["securitySchemes"]
    return {"openapi": "3.1.0", "info": {"title": title, "version": version},
            "paths": paths, "components": components}


def _schemas(pipeline, registry) -> dict:
    """``{part: schema}`` for the pipeline's validated parts, registered under components."""
    out = {}
    for check in pipeline.checks:
        if check is None or not check.source:
            continue
        name = _component_name(f"{pipeline.name}.{check.part}")
        registry[name] = _rebase(json.loads(check.source), f"#/components/schemas/{name}")
        out[check.part] = (name, registry[name])
    return out


def _component_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _rebase(schema, base: str):
    """Rewrite in-document ``$ref``s (``#/…``) to live under ``base``."""
    if isinstance(schema, dict):
        out = {k: _rebase(v, base) for k, v in schema.items()}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = base + ref[1:]
        return out
    if isinstance(schema, list):
        return [_rebase(v, base) for v in schema]
    return schema


def _operation(pipeline, method: str, schemas: dict, security_schemes: dict) -> dict:
    op = {"operationId": _component_name(f"{pipeline.name}.{method.lower()}"),
          "summary": pipeline.name}
    if pipeline.description:
        op["description"] = pipeline.description.strip()
    params = _parameters(pipeline, schemas)
    if params:
        op["parameters"] = params
    has_body = method not in _NO_BODY_METHODS
    if has_body:
        op["requestBody"] = _request_body(pipeline, schemas)
    security = _security(pipeline, security_schemes)
    if security:
        op["security"] = security
    op["responses"] = _responses(pipeline, has_body, bool(schemas))
    return op


def _parameters(pipeline, schemas) -> list:
    out = []
    for part, where in (("params", "path"), ("query", "query"), ("headers", "header")):
        name, schema = schemas.get(part, (None, {}))
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        required = set(schema.get("required", ())) if isinstance(schema, dict) else set()
        names = list(pipeline.param_names) if where == "path" else list(props)
        for pname in names:
            sub = props.get(pname, {"type": "string"})
            if name is not None and pname in props:
                sub = {"$ref": f"#/components/schemas/{name}/properties/{_escape(pname)}"}
            out.append({"name": pname, "in": where, "required": where == "path" or pname in required,
                        "schema": sub})
    return out


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _request_body(pipeline, schemas) -> dict:
    """Per accepted media type: JSON bodies are checked against ``validate.body`` as sent; XML,
    form and text bodies are first mapped to a JSON value (docs/http.md), so the schema is the
    mapped value's, said in the description. A text body is a string: text/plain is left out
    when the schema can never hold a string."""
    types = sorted(pipeline.content_types) or list(_PARSEABLE_DEFAULT)
    name, schema = schemas.get("body", (None, None))
    ref = {"$ref": f"#/components/schemas/{name}"} if name else {}
    content = {}
    for media in types:
        if _is_json(media) or not name:
            content[media] = {"schema": ref}
        elif media == "text/plain" and not _may_be_string(schema):
            continue
        else:
            content[media] = {"schema": {"description": "mapped to a JSON value as docs/http.md "
                                                         f"describes, then checked against {ref['$ref']}"},
                              "x-hookline-mapped-schema": ref}
    return {"required": False, "content": content}


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _may_be_string(schema) -> bool:
    if not isinstance(schema, dict):
        return bool(schema)
    kind = schema.get("type")
    return kind is None or kind == "string" or (isinstance(kind, list) and "string" in kind)


def _security(pipeline, schemes) -> list:
    auth = pipeline.auth
    if auth is None:
        return []
    name = f"{pipeline.name}-{auth.scheme}"
    if auth.scheme in ("bearer", "basic"):
        schemes[name] = {"type": "http", "scheme": auth.scheme}
    else:
        schemes[name] = {"type": "apiKey", "in": auth.scheme, "name": auth.name}
    return [{name: []}]


def _responses(pipeline, has_body: bool, validated: bool) -> dict:
    out = {}
    for respond in _responds(pipeline):
        out[str(respond.status)] = _declared(respond)
    if pipeline.respond is None:
        if pipeline.branches:
            out["202"] = {"description": "Accepted: stored, delivered in the background",
                          "content": {"application/json": {"schema": _ACCEPTED_SCHEMA}}}
        else:
            out.setdefault("204", {"description": "No Content"})
    refusals = [413]
    if has_body:
        refusals += [400, 415]
    if any(r.body is not None and not r.content_type for r in _responds(pipeline)):
        refusals.append(406)
    if validated or pipeline.steps or pipeline.respond is not None:
        refusals.append(422)
    if pipeline.verifier is not None or pipeline.auth is not None:
        refusals.append(401)
    if pipeline.allow_ips is not None:
        refusals.append(403)
    if pipeline.rate_limit is not None:
        refusals.append(429)
    if _has_sync_call(pipeline.steps):
        refusals += [502, 504]
    if pipeline.durable:
        refusals.append(503)
    for status in sorted(refusals):
        entry = out.setdefault(str(status), _problem(status))
        entry.setdefault("content", {}).update(_problem(status)["content"])
    return dict(sorted(out.items()))


def _declared(respond) -> dict:
    status = respond.status
    entry = {"description": _REASONS.get(status, f"HTTP {status}")}
    if respond.headers:
        entry["headers"] = {name: {"schema": {"type": "string"}} for name, _ in respond.headers}
    if respond.body is not None and status not in (204, 304):
        types = (respond.content_type,) if respond.content_type else respond.offered
        entry["content"] = {t: {"schema": {}} for t in types}
    return entry


def _problem(status: int) -> dict:
    return {"description": _REASONS.get(status, f"HTTP {status}") + " (a problem document)",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _responds(pipeline):
    """Every ``respond`` the pipeline can answer with, the top-level one first."""
    found = [pipeline.respond] if pipeline.respond is not None else []
    stack = list(pipeline.steps)
    while stack:
        step = stack.pop(0)
        if isinstance(step, Route):
            for branch in step.branches:
                if branch.respond is not None:
                    found.append(branch.respond)
                stack.extend(branch.steps)
    return found


def _has_sync_call(steps) -> bool:
    for step in steps:
        if isinstance(step, Call):
            return True
        if isinstance(step, Route) and any(_has_sync_call(b.steps) for b in step.branches):
            return True
    return False
