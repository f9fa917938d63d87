"""Pipeline files → compiled, frozen :class:`~dsl.graph.Pipeline` objects.

Stages: load (YAML + source map) → shape (DSL schema) → compile (expressions,
templates, JSON Schemas, step references) → cross-file checks. Each stage
collects diagnostics; nothing here raises for an author's mistake.

    >>> p, problems = compile_text("pipeline: hi\\nreceive: {path: /hi}\\n", "hi.yaml")
    >>> p.name, p.methods, problems
    ('hi', frozenset({'POST'}), [])
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from .errors import Diagnostic
from .expressions import ExpressionError, bare_literals, compile_expression, function_names
from .hints import dashed_names, did_you_mean, error_hint, quoted_text
from .kinds import csv_problem
from .functions import bound_registry
from .jmes_functions import FUNCTIONS
from .graph import AsyncBranch, Check, Cors, Dedupe, History, Pipeline, Respond, Retry
from .loader import load_yaml
from .reads import Selection, branch_needs, reads_of
from .schemas import coercions, is_file_ref, load_schema_and_source
from .salvage import salvage
from .schema_check import CALL_OUTPUT, ROUTE_OUTPUT, UNKNOWN, infer, request_shape, steps_shape
from .shape import check_shape, refused_paths
from .sources import capture
from .spec import DEFAULT_DEDUPE_TTL, DEFAULT_MAX_BODY, HISTORY_DEFAULTS, RETRY_DEFAULTS
from .steps import BY_KEY
from .tables import compile_tables
from .templates import Template, parse
from .verify import VerifyConfigError, make_verifier, signature_headers
from .access import AllowIps, Auth, RateLimit, basic_credential, parse_networks

CHECK_ORDER = ("params", "query", "headers", "body")
_MEDIA = {"json": "application/json", "xml": "application/xml", "text": "text/plain", "csv": "text/csv"}
_PARSEABLE = ("json", "xml", "x-www-form-urlencoded", "plain")
_PARAM = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CompileContext:
    """What compiling one file needs: the document, the environment and the
    step ids that have run at the current point (for reference checks)."""

    def __init__(self, doc, base_dir: Path, env, require_env=True):
        self.doc, self.base_dir, self.env, self.require_env = doc, base_dir, env, require_env
        self.diagnostics: list[Diagnostic] = []
        self.ids = _collect_ids(doc.data)
        self.available: set[str] = set()
        self.templated: set[tuple] = set()
        self.reads: set[Path] = set()   # files the pipeline reads besides its own (its version hashes them)
        self.secret_files: set[Path] = set()  # those of them read by ${file:}: never kept with a version's source
        self.secrets: set[str] = set()  # ${env:}/${file:} values substituted: masked in the run history
        self.request = UNKNOWN          # dsl.schema_check: the request's shape, once validate is read
        self.schemas: dict = {}         # validated part -> its JSON Schema
        self.outputs: dict = {}         # step id -> the shape of its output, where it is known
        self.shapes: dict = {}          # expression path -> the shape of its result
        self.functions = FUNCTIONS   # with the pipeline's tables and body limit once _compile reads them

    def get(self, path):
        value = self.doc.data
        for key in path:
            value = value[key]
        return value

    def error(self, path, code, message, *, key=False, offset=None, severity="error"):
        self.diagnostics.append(self.doc.diag(path, code, message, key=key, offset=offset, severity=severity))

    def where(self, path, step_id) -> str:
        return f"step '{step_id}'"

    def expr(self, path, *, text=None, offset=0):
        """Compile the expression at ``path`` (or ``text`` found at ``offset`` in it)."""
        whole = text is None
        text = self.get(path) if whole else text
        try:
            compiled = compile_expression(text, self.functions)
        except ExpressionError as exc:
            hint = error_hint(text, exc.code, exc.offset, function_names())
            self.error(path, exc.code, exc.message + hint, offset=offset + exc.offset)
            return None
        explained = self._slips(path, text, offset, whole)
        self._against_schemas(path, compiled, offset, whole, explained)
        for step_id, at in compiled.step_refs():
            self._check_ref(path, step_id, offset + at)
        for word, at in bare_literals(text):
            self.error(path, "bare-literal", f"'{word}' here is a field name; for the literal write `{word}`",
                       offset=offset + at, severity="warning")
        return compiled

    def _slips(self, path, text, offset, whole) -> set:
        """Warnings for text that compiles but is most likely not what the author meant; returns
        the offsets they explain (no other warning is given there)."""
        explained = set()
        for quoted, at in dashed_names(text):
            self.error(path, "dashed-name", f"this subtracts names; for a name with '-' write {quoted}",
                       offset=offset + at, severity="warning")
            explained.update(range(at, at + len(quoted)))
        span = self.doc.spans.get(tuple(path)) if whole else None
        message = quoted_text(text, span[2] if span else None)
        if message:
            self.error(path, "quoted-text", message, severity="warning")
            explained.update(range(len(text) + 1))
        return explained

    def _against_schemas(self, path, compiled, offset, whole, explained=frozenset()):
        """Warnings where the validate schemas (or known step outputs) say a path reads nothing."""
        try:
            shape, findings = infer(compiled.tree, self.request, steps_shape(self.outputs))
        except RecursionError:      # a tree the compiler took but too deep to follow here: no checks
            return
        for f in findings:
            if f.offset not in explained:
                self.error(path, f.code, f.message, offset=offset + f.offset, severity="warning")
        if whole:
            self.shapes[tuple(path)] = shape

    def _output(self, path, spec):
        kind = next((k for k in BY_KEY if k in spec), None)
        if kind == "transform":
            return self.shapes.get(tuple(path) + ("transform",), UNKNOWN)
        return {"call": CALL_OUTPUT, "route": ROUTE_OUTPUT}.get(kind, UNKNOWN)

    def _check_ref(self, path, step_id, offset):
        if step_id in self.available:
            return
        if step_id in self.ids:
            msg = f"step '{step_id}' has not run at this point; a step can only use earlier steps"
            self.error(path, "step-not-run", msg, offset=offset)
        else:
            known = ", ".join(sorted(self.ids)) or "none"
            self.error(path, "unknown-step", f"no step with id '{step_id}'{did_you_mean(step_id, self.ids)} "
                       f"(known: {known})", offset=offset)

    def template(self, path, *, url: bool):
        """Compile a template string: substitute ${env:}/${file:}, compile {expressions}."""
        self.templated.add(path)
        raw_parts = parse(self.get(path))
        parts = [self._template_part(path, part) for part in raw_parts]
        if any(p is None for p in parts):
            return None
        template = Template(tuple(_join_literals(parts)), url)
        if url:
            exprs = [p.offset - 1 for p in raw_parts if p.kind == "expr"]
            self._check_url(path, template, exprs[0] if exprs else 0)
        return template

    def _template_part(self, path, part):
        if part.kind == "lit":
            return part.text
        if part.kind == "expr":
            return self.expr(path, text=part.text.strip(), offset=part.offset + _lead(part.text))
        if part.kind == "error":
            self.error(path, "bad-template", "unbalanced brace; write {{ or }} for a literal brace",
                       offset=part.offset)
            return None
        return self._substitute(path, part)

    def _substitute(self, path, part):
        at = part.offset
        if part.kind == "env":
            value = self.env.get(part.text)
            if value is None:
                severity = "error" if self.require_env else "warning"
                self.error(path, "missing-env", f"environment variable {part.text} is not set",
                           offset=at, severity=severity)
                return None if self.require_env else f"http://{part.text.lower()}.invalid/"
            self.secrets.add(value)
            return value
        file = self.base_dir / part.text
        self.reads.add(file)
        self.secret_files.add(file)
        try:
            value = file.read_text().rstrip("\n")
        except (OSError, UnicodeDecodeError) as exc:
            self.error(path, "missing-file", f"cannot read {part.text}: {exc.strerror or 'not text'}", offset=at)
            return None
        self.secrets.add(value)
        return value

    def _check_url(self, path, template, expr_at):
        """Scheme, host and port must be literal: request data may only fill
        the path and query, where it is percent-encoded."""
        first = template.parts[0] if template.parts and isinstance(template.parts[0], str) else ""
        m = re.match(r"^https?://([^/?#]*)", first)
        if m is None or (template.is_static and not m.group(1)):
            self.error(path, "bad-url", "the URL must start with http:// or https:// and a host")
        elif not template.is_static and not re.match(r"^https?://[^/?#]+[/?#]", first):
            msg = "the host and port must be fixed: put a '/' after them before any {expression}"
            self.error(path, "url-authority-from-request", msg, offset=expr_at)

    def respond(self, path):
        spec = self.get(path)
        headers = tuple((name, self.expr(path + ("headers", name))) for name in spec.get("headers", {}))
        body = self.expr(path + ("body",)) if "body" in spec else None
        offered = tuple(_MEDIA[f] for f in spec.get("formats", ())) or Respond.__dataclass_fields__["offered"].default
        if "csv" in spec.get("formats", ()) and body is not None and "content_type" not in spec:
            self._csv_form(path + ("body",), body)
        return Respond(spec.get("status", 200), headers, body, "respond", offered, spec.get("content_type"))

    def _csv_form(self, path, body):
        """Offering CSV for a body that can never be CSV only ever answers 406 to a CSV client."""
        problem = csv_problem(body.source)
        if problem:
            self.error(path, "unwritable-body", f"respond.formats offers CSV, which this body can never be "
                       f"(a flat object or a list of flat objects): {problem}; a client that takes only "
                       "text/csv gets 406", severity="warning")

    def steps(self, path):
        """Compile a list of steps; a step with errors is left out (its diagnostics stay)."""
        out = []
        for i, spec in enumerate(self.get(path)):
            step = self._step(path + (i,), spec)
            if step is not None:
                out.append(step)
            self.outputs[spec["id"]] = self._output(path + (i,), spec)
            self.available.add(spec["id"])
            self.available.update(_collect_ids(spec, path))
        return tuple(out)

    def _step(self, path, spec):
        kind = next(k for k in BY_KEY if k in spec)
        return BY_KEY[kind].compile(self, path, spec["id"])

    @contextmanager
    def scope(self):
        saved = set(self.available)
        try:
            yield
        finally:
            self.available = saved


def _lead(text: str) -> int:
    return len(text) - len(text.lstrip())


def _join_literals(parts):
    out = []
    for p in parts:
        if out and isinstance(p, str) and isinstance(out[-1], str):
            out[-1] += p
        else:
            out.append(p)
    return out


def _collect_ids(data, path=()) -> dict:
    """Every step id below ``data`` → the paths of the steps that define it."""
    ids: dict = {}
    stack = [(data, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("id"), str) and at[-2:-1] == ("steps",):
                ids.setdefault(node["id"], []).append(at)
            stack.extend((v, at + (k,)) for k, v in node.items() if k not in ("validate",))
        elif isinstance(node, list):
            stack.extend((v, at + (i,)) for i, v in enumerate(node))
    return ids


def compile_text(text: str, file: str, env=None, base_dir=None, require_env=True):
    """Compile one pipeline's text: ``(Pipeline or None, [Diagnostic])``.

    With ``require_env=False`` (``hookline lint``) a missing ``${env:…}`` is a
    warning and a placeholder stands in for it."""
    doc, problems = load_yaml(text, file)
    if doc is None:
        return None, problems
    if not isinstance(doc.data, dict):
        return None, problems + [doc.diag((), "wrong-type", "a pipeline file must be a mapping of keys")]
    problems += check_shape(doc)
    base_dir = Path(base_dir or Path(file).parent)
    env = os.environ if env is None else env
    if any(d.severity == "error" for d in problems):    # no pipeline; the well-formed parts are compiled
        return None, sorted(set(problems + _salvaged_diagnostics(doc, base_dir, env, require_env)))
    cc = CompileContext(doc, base_dir, env, require_env)
    pipeline = _compile(cc)
    problems = sorted(set(problems + cc.diagnostics))
    if any(d.severity == "error" for d in problems):
        return None, problems
    files = tuple(sorted(str(f) for f in cc.reads))
    contents = {name: _content(name) for name in files}
    version = version_of(text, files, cc.base_dir, contents.__getitem__)
    kept = {os.path.relpath(name, cc.base_dir): data for name, data in contents.items()
            if Path(name) not in cc.secret_files}
    secrets = sorted(os.path.relpath(f, cc.base_dir) for f in cc.secret_files)
    source = capture(version, pipeline.name, file, text, cc.base_dir, kept, secrets)
    return dataclasses.replace(pipeline, version=version, reads=files, source=source), problems


def version_of(text: str, files, base=".", read=None) -> str:
    """A short hash of a pipeline's text and every file it reads (schemas, ``${file:}``…):
    12 hex digits that change when anything the compiled pipeline depends on changes.

    >>> version_of("pipeline: a", ())
    '461ca0cbdbee'
    """
    digest = hashlib.sha256(text.encode())
    for name in files:
        content = (read or _content)(name)
        relative = os.path.relpath(name, base)       # the same version whatever the directory is called
        digest.update(b"\0" + relative.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:12]


def _content(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except OSError:
        return b"\0missing"


def _salvaged_diagnostics(doc, base_dir, env, require_env) -> list:
    """The compile stage's diagnostics for ``doc`` with its ill-formed parts stood in for
    (``dsl.salvage``): a structural mistake does not hide the others."""
    data = salvage(doc.data, refused_paths(doc.data), refused_paths)
    if data is None:
        return []
    cc = CompileContext(dataclasses.replace(doc, data=data), base_dir, env, require_env)
    try:
        _compile(cc)
    except Exception:   # best effort on data that never fitted: what was found so far stands
        pass
    return cc.diagnostics


def _compile(cc):
    data = cc.get(())
    _duplicate_ids(cc)
    receive = data["receive"]
    cc.functions = bound_registry(compile_tables(cc), receive.get("max_body_bytes", DEFAULT_MAX_BODY))
    params = _path_params(cc, receive["path"])
    checks = tuple(_check(cc, part) for part in CHECK_ORDER if part in data.get("validate", {}))
    cc.request = request_shape(cc.schemas, params)
    verifier = _verifier(cc, receive["verify"]) if "verify" in receive else None
    if "dedupe" in receive:
        dedupe = _dedupe(cc, receive)
    else:   # replay protection: a signed delivery id is never processed twice
        dedupe = Dedupe(None, DEFAULT_DEDUPE_TTL) if verifier is not None else None
    steps = cc.steps(("steps",)) if "steps" in data else ()
    respond = cc.respond(("respond",)) if "respond" in data else None
    branches = tuple(_branch(cc, i, b) for i, b in enumerate(data.get("async", [])))
    pipeline = Pipeline(
        name=data["pipeline"], file=cc.doc.file, description=data.get("description", ""),
        path=receive["path"], methods=frozenset(receive.get("methods", ["POST"])),
        max_body_bytes=receive.get("max_body_bytes", DEFAULT_MAX_BODY), checks=checks,
        steps=steps, respond=respond, is_async=any(s is not None and s.is_async for s in steps),
        param_names=params, branches=branches, dedupe=dedupe, verifier=verifier,
        persist=_persist(branches),
        content_types=frozenset(t.lower() for t in receive.get("content_types", ())),
        accept_raw=any(not _parseable(t) for t in receive.get("content_types", ())),
        cors=_cors(receive) if "cors" in receive else None,
        auth=_auth(cc, receive["auth"], data["pipeline"]) if "auth" in receive else None,
        allow_ips=_allow_ips(cc, receive["allow_ips"]) if "allow_ips" in receive else None,
        rate_limit=_rate_limit(cc, receive["rate_limit"]) if "rate_limit" in receive else None)
    _stray_substitutions(cc, cc.doc.data, ())
    return dataclasses.replace(pipeline, history=_history(cc, receive.get("history", True), pipeline))


_ALWAYS_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization"}) | signature_headers()
MIN_SECRET = 8      # shorter ${env:} values (ports, flags) are not masked in the run history
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _history(cc, spec, pipeline) -> History | None:
    """``receive.history``: true (or absent) records with the defaults, false not at all."""
    if spec is False:
        return None
    spec = {**HISTORY_DEFAULTS, **(spec if isinstance(spec, dict) else {})}
    redact = set(_ALWAYS_REDACTED) | {h.lower() for h in spec.get("redact_headers", ())}
    if pipeline.verifier is not None:
        redact.add(pipeline.verifier.header.lower())
    if pipeline.auth is not None and pipeline.auth.scheme == "header":
        redact.add(pipeline.auth.name.lower())
    secrets = tuple(sorted({part for s in cc.secrets for part in _secret_parts(s) if len(part) >= MIN_SECRET},
                           key=len, reverse=True))
    plain = not secrets and (pipeline.auth is None or pipeline.auth.scheme != "query")
    return History(spec["keep"], duration_s(spec["max_age"]), spec["body_bytes"], frozenset(redact), secrets, plain)


def _secret_parts(value: str) -> tuple:
    """What of a substituted value the run history masks: all of it, except for a URL's
    scheme, host and port (a base URL from ``${env:ERP_URL}`` stays readable; user
    information and a path, as in a Slack webhook URL, are masked).

    >>> _secret_parts("https://u:pw@hooks.example/services/T0/B0/xyz")
    ('u:pw', '/services/T0/B0/xyz')
    >>> _secret_parts("http://127.0.0.1:9000"), _secret_parts("s3cr3t-token")
    ((), ('s3cr3t-token',))
    """
    m = re.match(r"^https?://(?:([^/?#@]*)@)?[^/?#]*(.*)$", value, re.DOTALL)
    if m is None:
        return (value,)
    return tuple(part for part in m.groups() if part)


def duration_s(value) -> int:
    """Seconds from ``7d``, ``12h``, ``30m``, ``90s`` or a plain number of seconds.

    >>> duration_s("7d"), duration_s(90)
    (604800, 90)
    """
    if isinstance(value, int):
        return value
    return int(value[:-1]) * _UNITS[value[-1]]


def _secret(cc, path) -> str:
    """A credential from ${env:…}/${file:…} (a literal one is a warning); "" when unusable."""
    if not any(p.kind in ("env", "file") for p in parse(cc.get(path))):
        cc.error(path, "literal-secret", "a secret written in the file leaks with it; use ${env:NAME} "
                 "or ${file:PATH}", severity="warning")
    template = cc.template(path, url=False)
    if template is not None and not template.is_static:
        cc.error(path, "bad-template", "a secret is fixed at load time: it cannot hold {expressions}")
        return ""
    return template.render({}) if template is not None else ""


def _auth(cc, spec, realm):
    base = ("receive", "auth")
    if "bearer" in spec:
        tokens = [_secret(cc, base + ("bearer", i)) for i in range(len(spec["bearer"]))]
        return Auth("bearer", tuple(f"Bearer {t}".encode() for t in tokens), "", realm)
    if "basic" in spec:
        pairs = [(p["user"], _secret(cc, base + ("basic", i, "password"))) for i, p in enumerate(spec["basic"])]
        return Auth("basic", tuple(basic_credential(u, pw) for u, pw in pairs), "", realm)
    key = spec["api_key"]
    keys = tuple(_secret(cc, base + ("api_key", "keys", i)).encode() for i in range(len(key["keys"])))
    scheme = "header" if "header" in key else "query"
    name = key["header"].lower() if scheme == "header" else key["query"]
    return Auth(scheme, keys, name, realm)


def _allow_ips(cc, values):
    nets, problems = parse_networks(values)
    for i, message in problems:
        cc.error(("receive", "allow_ips", i), "bad-value", message)
    return AllowIps(nets)


def _rate_limit(cc, spec):
    key = cc.expr(("receive", "rate_limit", "key")) if "key" in spec else None
    burst = spec.get("burst") or max(1, int(spec["per_s"]))
    return RateLimit(float(spec["per_s"]), burst, key)


def _cors(receive):
    spec = receive["cors"]
    methods = spec.get("methods") or receive.get("methods", ["POST"])
    return Cors(frozenset(o.lower().rstrip("/") for o in spec["origins"]), ", ".join(methods),
                ", ".join(spec.get("headers", ["Content-Type"])), str(spec.get("max_age_s", 600)))


def _parseable(media: str) -> bool:
    sub = media.lower().partition("/")[2]
    return media.lower() != "*/*" and (sub in _PARSEABLE or sub.endswith(("+json", "+xml")))


def _verifier(cc, spec):
    """Build the signature verifier; secrets come only from ${env:…}/${file:…}."""
    base = ("receive", "verify")
    secrets, missing = [], False
    for i, raw in enumerate(spec.get("secrets", [])):
        missing |= any(p.kind == "env" and p.text not in cc.env for p in parse(raw))
        secrets.append(_secret(cc, base + ("secrets", i)))
    options = {k: v for k, v in spec.items() if k not in ("preset", "secrets")}
    try:
        return make_verifier(spec["preset"], secrets, **options)
    except VerifyConfigError as exc:
        for option, message in exc.problems:
            if missing and option.startswith("secrets"):
                continue   # lint without the environment: the placeholder is not a real secret
            cc.error(base + _option_path(option), "bad-verify", f"verify.{option}: {message}")
        return None


def _option_path(option: str) -> tuple:
    name, _, index = option.partition("[")
    return (name, int(index.rstrip("]"))) if index else (name,)


def _dedupe(cc, receive):
    key = cc.expr(("receive", "dedupe", "key"))
    return Dedupe(key, receive["dedupe"].get("ttl_s", DEFAULT_DEDUPE_TTL))


def _branch(cc, index, spec):
    path = ("async", index)
    if [b["id"] for b in cc.get(("async",))].index(spec["id"]) != index:
        cc.error(path + ("id",), "duplicate-branch", f"async branch id '{spec['id']}' is used twice")
    with cc.scope():
        when = cc.expr(path + ("when",)) if "when" in spec else None
        steps = cc.steps(path + ("steps",))
    retry = Retry(**{**RETRY_DEFAULTS, **spec.get("retry", {})})
    return AsyncBranch(spec["id"], when, steps, retry, branch_needs(steps))


def _persist(branches) -> Selection:
    """What a branch job keeps of the context: what the branches' steps read
    (their ``when`` is evaluated before the job is stored)."""
    reads = reads_of(tuple(b.steps for b in branches))
    return Selection.of([None] if reads is None else reads)


def _path_params(cc, path) -> tuple:
    names, seen = [], set()
    for m in _PARAM.finditer(path):
        name = m.group(1)
        if not _IDENT.match(name) or name in seen:
            cc.error(("receive", "path"), "bad-path", f"path parameter {{{name}}} must be a unique identifier",
                     offset=m.start())
        seen.add(name)
        names.append(name)
    return tuple(names)


def _check(cc, part):
    path = ("validate", part)
    formats = cc.get(("validate",)).get("formats", True)
    if is_file_ref(cc.get(path)):
        cc.reads.add(cc.base_dir / cc.get(path)["$ref"])
    schema, validator, problem = load_schema_and_source(cc.get(path), cc.base_dir, formats)
    if problem:
        inline = not is_file_ref(cc.get(path))
        where = path + problem.where if inline else path
        in_key = inline and problem.where[-2:-1] == ("patternProperties",)
        cc.error(where, "bad-schema", f"validate.{part}: {problem}", key=in_key)
        return None
    cc.schemas[part] = schema
    coerce = coercions(schema, lower=part == "headers") if part != "body" else ()
    return Check(part, validator, coerce, json.dumps(schema, sort_keys=True))


def _duplicate_ids(cc):
    for step_id, paths in cc.ids.items():
        for at in sorted(paths, key=cc.doc.pos)[1:]:
            first = cc.doc.pos(min(paths, key=cc.doc.pos))[0]
            cc.error(at + ("id",), "duplicate-step",
                     f"step id '{step_id}' is already used at line {first}; ids must be unique")


def _stray_substitutions(cc, node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            _stray_substitutions(cc, v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _stray_substitutions(cc, v, path + (i,))
    elif isinstance(node, str) and path not in cc.templated and path[:1] != ("validate",):
        m = re.search(r"\$\{(env|file):", node)
        if m:
            cc.error(path, "substitution-not-allowed",
                     "${env:…} and ${file:…} are substituted only in call url and headers, verify "
                     "secrets and auth credentials", offset=m.start())
