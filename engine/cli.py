"""``hookline``: serve, lint, test, run, fuzz and schema.

Exit codes: 0 success, 1 the pipelines have errors (or a test failed), 2 wrong
usage (or a broken test file).
Diagnostics go to standard output as ``file:line:col: code: message``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import dsl


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def _parser():
    parser = argparse.ArgumentParser(prog="hookline", description="Webhook pipelines, compiled and served.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the pipelines of a directory over HTTP")
    serve.add_argument("paths", nargs="*", default=["pipelines"], metavar="DIR",
                       help="pipeline directories or files (default: pipelines)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="HTTP processes sharing the port (default 1)")
    serve.add_argument("--delivery-workers", type=int, default=1, metavar="N",
                       help="processes delivering async branches (default 1); 0: deliver inside each "
                            "HTTP worker (always so with the memory: store)")
    serve.add_argument("--delivery-nice", type=int, default=19, choices=range(0, 20), metavar="N",
                       help="run delivery workers N steps nicer than the HTTP workers (0-19, default 19): "
                            "on a shared core acknowledging comes first")
    serve.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"),
                       help="event loop of the workers: uvloop when installed (auto), or asyncio")
    serve.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S",
                       help="on SIGTERM, wait this long for running requests (default 10)")
    serve.add_argument("--store", default="sqlite:hookline.db", metavar="URL",
                       help="where async jobs, dedupe keys and the run history live: sqlite:PATH (default "
                            "sqlite:hookline.db), "
                            "redis://HOST:PORT/DB")
    serve.add_argument("--max-backlog", type=int, default=100_000, metavar="N",
                       help="answer 503 to new async requests while N jobs wait (default 100000)")
    serve.add_argument("--visibility-s", type=float, default=60.0, metavar="S",
                       help="lease of an async job; a crashed process's jobs are taken again after it "
                            "(default 60)")
    serve.add_argument("--admin-prefix", metavar="PATH",
                       help="serve the admin JSON endpoints under PATH (e.g. /_hookline); off by default; "
                            "needs HOOKLINE_ADMIN_TOKEN in the environment")
    serve.add_argument("--metrics-port", type=int, metavar="PORT",
                       help="also serve /metrics, /health/live and /health/ready on this port, without a "
                            "token (bound on --host); metrics are counted when this or --admin-prefix is set")
    serve.add_argument("--log-format", default="text", choices=("text", "json"),
                       help="log lines on standard error as text (default) or one JSON object each")
    serve.add_argument("--allow-hosts", default="", metavar="HOST,...",
                       help="restrict call destinations (and redirects) to these hosts; default: any host "
                            "written in the pipelines")
    serve.add_argument("--trusted-proxies", default="", metavar="CIDR,...",
                       help="proxies whose X-Forwarded-For/Forwarded names the client (for allow_ips, "
                            "rate_limit); default none: the socket address is the client")
    serve.add_argument("--reload", action="store_true",
                       help="recompile and swap in the pipelines when a file changes (SIGHUP always does); "
                            "a set with errors is not taken: the server keeps serving the current one")
    serve.set_defaults(func=_serve)
    lint = sub.add_parser("lint", help="check pipeline files; print every problem")
    lint.add_argument("paths", nargs="+", metavar="PATH")
    lint.add_argument("--require-env", action="store_true",
                      help="a missing ${env:...} variable is an error, as for serve (default: a warning)")
    lint.add_argument("--versions", action="store_true",
                      help="also print each pipeline's version: <pipeline> <version> <file>, tab-separated")
    lint.add_argument("--strict", action="store_true",
                      help="warnings count as errors (exit 1), for CI")
    lint.set_defaults(func=_lint)
    _testing_parsers(sub)
    schema = sub.add_parser("schema", help="print the editor JSON Schema of the DSL")
    schema.add_argument("--tests", action="store_true",
                        help="the schema of pipeline test files (NAME.test.yaml) instead")
    schema.set_defaults(func=_schema)
    openapi = sub.add_parser("openapi", help="print the OpenAPI 3.1 document of the pipelines (JSON)")
    openapi.add_argument("paths", nargs="*", default=["pipelines"], metavar="PATH",
                         help="pipeline directories or files (default: pipelines)")
    openapi.add_argument("--title", default="Hookline pipelines", help="info.title of the document")
    openapi.set_defaults(func=_openapi)
    _ops_parsers(sub)
    return parser


def _testing_parsers(sub):
    test = sub.add_parser("test", help="run pipeline test files (NAME.test.yaml) offline")
    test.add_argument("paths", nargs="*", default=["pipelines"], metavar="PATH",
                      help="test files, pipeline files (their NAME.test.yaml) or directories (default: pipelines)")
    test.add_argument("--junit", metavar="FILE", help="also write the results to FILE as JUnit XML")
    test.set_defaults(func=_test)
    run = sub.add_parser("run", help="one request through a pipeline offline, printing each step's output")
    run.add_argument("path", metavar="PATH", help="a test file (its request and mocks) or a pipeline file "
                                                  "(calls answered by an echo)")
    run.add_argument("--test", metavar="NAME", help="which test of the test file (default: the first)")
    run.add_argument("--method", help="request method (default: the pipeline's, else POST)")
    run.add_argument("--path", dest="path_", metavar="TARGET", help="request target, /path?query "
                                                                    "(default: the pipeline's path)")
    run.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="a request header")
    run.add_argument("--body", metavar="TEXT", help="request body, sent as is (JSON unless --header says)")
    run.add_argument("--body-file", metavar="FILE", help="send this file's bytes as the body")
    run.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                     help="a value for ${env:NAME} (over the environment)")
    run.set_defaults(func=_run)
    fuzz = sub.add_parser("fuzz", help="generate requests from the validate schemas; report those that break "
                                       "a pipeline")
    fuzz.add_argument("paths", nargs="*", default=["pipelines"], metavar="PATH",
                      help="pipeline files or directories (default: pipelines)")
    fuzz.add_argument("--max-examples", type=int, default=200, metavar="N",
                      help="requests tried per search (default 200)")
    fuzz.add_argument("--seconds", type=float, default=30.0, metavar="S",
                      help="stop looking for new failures in a pipeline after S seconds (default 30)")
    fuzz.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                      help="a value for ${env:NAME} (over the environment and the test file's env)")
    fuzz.set_defaults(func=_fuzz)


def _test(args) -> int:
    from .testing.junit import junit_xml
    from .testing.runner import run_paths
    run = run_paths(args.paths)
    if args.junit:
        Path(args.junit).write_bytes(junit_xml(run))
    return run.exit_code


def _run(args) -> int:
    from .testing.trace import run_command
    return run_command(args, sys.stdout)


def _fuzz(args) -> int:
    from .testing.fuzz import fuzz_command
    env = dict(e.partition("=")[::2] for e in args.env)
    if args.max_examples < 1 or args.seconds <= 0 or any(not name for name in env) or \
            any("=" not in e for e in args.env):
        print("hookline fuzz: --max-examples and --seconds must be positive, --env NAME=VALUE", file=sys.stderr)
        return 2
    return fuzz_command(args.paths, args.max_examples, args.seconds, env, sys.stdout)


def _ops_parsers(sub):
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", default="sqlite:hookline.db", metavar="URL",
                       help="the store of the server (default sqlite:hookline.db)")
    deliveries = sub.add_parser("deliveries", help="list or show async deliveries and their jobs")
    dsub = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = dsub.add_parser("list", parents=[store], help="list jobs (oldest first)")
    p.add_argument("--state", choices=["pending", "leased", "done", "dead"])
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_ops, op="list")
    p = dsub.add_parser("show", parents=[store], help="show a job (by job id) or a delivery's jobs")
    p.add_argument("id")
    p.set_defaults(func=_ops, op="show")
    dlq = sub.add_parser("dlq", help="the dead-letter store: list, show, replay, purge")
    qsub = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = qsub.add_parser("list", parents=[store], help="list dead jobs")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_ops, op="list", state="dead")
    p = qsub.add_parser("show", parents=[store], help="show a dead job with its payload")
    p.add_argument("id")
    p.set_defaults(func=_ops, op="show-dead")
    p = qsub.add_parser("replay", parents=[store],
                        help="deliver a dead job again (or --all) with the pipeline version that accepted it")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true")
    p.add_argument("--current", action="store_true",
                   help="with today's version of the pipeline instead (the job is pinned to it)")
    p.add_argument("--dry-run", action="store_true",
                   help="send and change nothing: print what each version (accepting, current) would send "
                        "and the diff")
    p.add_argument("--pipelines", action="append", metavar="PATH",
                   help="with --current/--dry-run: the pipelines the server serves (default: pipelines)")
    p.set_defaults(func=_ops, op="replay")
    p = qsub.add_parser("purge", parents=[store], help="delete every dead job")
    p.set_defaults(func=_ops, op="purge")
    runs = sub.add_parser("runs", help="the run history: list runs, show one with its steps and deliveries")
    rsub = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = rsub.add_parser("list", parents=[store], help="list runs (newest first), one line each")
    p.add_argument("--pipeline", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("-q", "--query", default=None, help="a run id, a delivery id or a header value")
    p.set_defaults(func=_ops, op="runs")
    p = rsub.add_parser("show", parents=[store], help="show a run as JSON, with its jobs and attempts")
    p.add_argument("id")
    p.set_defaults(func=_ops, op="run")


def _ops(args) -> int:
    """``deliveries``/``dlq``: 0 done, 1 the id is not there (for ``dlq``: not a dead job),
    2 wrong usage or a store that does not exist or cannot be reached."""
    import asyncio
    import json
    from . import admin, replay
    from .queue import StoreUnavailable

    async def run(store):
        await store.open()
        try:
            if args.op == "list":
                return await admin.list_jobs(store, args.state, args.limit)
            if args.op == "show":
                return await admin.show(store, args.id)
            if args.op == "show-dead":
                return await admin.show_dead(store, args.id)
            if args.op == "purge":
                return await admin.purge(store)
            if args.op == "runs":
                return await admin.list_runs(store, args.pipeline, args.limit, args.query)
            if args.op == "run":
                return await admin.show_run(store, args.id)
            ident = None if args.all else args.id
            if args.dry_run:
                return await replay.dry_run(store, ident, current)
            if args.current:
                return await replay.replay_current(store, ident, current)
            if args.all:
                return await admin.replay_all(store)
            return await admin.replay(store, args.id)
        finally:
            await store.close()

    command = f"hookline {args.command} {args.action}"
    current = None
    if args.op == "replay":
        if not (args.all or args.id):
            print(f"{command}: give a job id or --all", file=sys.stderr)
            return 2
        if args.current or args.dry_run:
            current, problem = _current(args.pipelines or ["pipelines"])
            if problem:
                print(f"{command}: {problem}", file=sys.stderr)
                return 2
    if args.op == "runs" and args.limit < 1:
        print(f"{command}: --limit must be 1 or more", file=sys.stderr)
        return 2
    store, problem = _existing_store(args.store)
    if problem is None:
        try:
            found, value = asyncio.run(run(store))
        except StoreUnavailable as exc:
            problem = f"the store cannot be reached: {exc}"
    if problem is not None:
        print(f"{command}: --store {args.store}: {problem}", file=sys.stderr)
        return 2
    if not found:
        print(f"{command}: {value}", file=sys.stderr)
        return 1
    if isinstance(value, str):
        print(value, end="")
    elif args.op == "list":
        for job in value:
            print(admin.line(job))
        print(f"{len(value)} job(s)", file=sys.stderr)
    elif args.op == "runs":
        from .history import line
        for run in value:
            print(line(run))
        print(f"{len(value)} run(s)", file=sys.stderr)
    else:
        print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def _current(paths):
    """``(pipelines, None)`` served today from ``paths``, or ``(None, why not)``; errors on stderr."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return None, f"--pipelines {missing[0]}: no such file or directory"
    pipelines, problems = dsl.compile_paths(paths)
    errors = [d for d in problems if d.severity == "error"]
    for d in errors:
        print(d, file=sys.stderr)
    if errors or not pipelines:
        return None, f"the pipelines in {' '.join(paths)} do not compile; give --pipelines as the server is given them"
    return pipelines, None


def _existing_store(url: str):
    """``(store, None)``, not yet opened, or ``(None, why not)``: the commands that look into
    a server's store never create one (a wrong path would show an empty store)."""
    from .queue import open_store
    try:
        store = open_store(url)
    except ValueError as exc:
        return None, str(exc)
    if url.partition(":")[0].lower() == "memory":
        return None, "the memory: store lives inside the server process; there is nothing to read here"
    path = getattr(store, "path", None)
    if path is not None and not Path(path).is_file():
        return None, f"no store at {Path(path).resolve()} (give the --store the server runs with)"
    return store, None


def _compile(paths, require_env=True, strict=False):
    """Compile and print every diagnostic; return (pipelines, errors) (``strict``: warnings too)."""
    missing = [p for p in paths if not Path(p).exists()]
    for p in missing:
        print(f"{p}:1:1: not-found: no such file or directory")
    pipelines, problems = dsl.compile_paths([p for p in paths if p not in missing], require_env=require_env)
    for d in problems:
        print(d)
    errors = [d for d in problems if d.severity == "error" or strict and d.code != "missing-env"]
    return pipelines, errors + missing


def _lint(args) -> int:
    pipelines, errors = _compile(args.paths, require_env=args.require_env, strict=args.strict)
    files = len(dsl.pipeline_files([p for p in args.paths if Path(p).exists()]))
    if args.versions:
        for p in sorted(pipelines, key=lambda p: p.name):
            print(f"{p.name}\t{p.version}\t{p.file}")
    if errors:
        print(f"hookline lint: {len(errors)} error(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"hookline lint: {files} file(s), {len(pipelines)} pipeline(s), no errors", file=sys.stderr)
    return 0


def _serve(args) -> int:
    from .serve import configure_logging, delivers_apart, resolve_loop, serve
    pipelines, problems = _compile(args.paths)
    if problems:
        print(f"hookline serve: not starting: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    if not pipelines:
        print("hookline serve: not starting: no pipelines found", file=sys.stderr)
        return 1
    try:
        loop = resolve_loop(args.loop)
    except ValueError as exc:
        print(f"hookline serve: --loop: {exc}", file=sys.stderr)
        return 2
    access = configure_logging(args.log_format)

    def ready(sockets):
        port = sockets[0].getsockname()[1]
        apart = args.delivery_workers if delivers_apart(pipelines, args.store, args.delivery_workers) else 0
        line = (f"hookline: serving {len(pipelines)} pipeline(s) on http://{args.host}:{port} "
                f"(workers={args.workers}, delivery_workers={apart}, loop={loop})")
        if args.log_format == "json":       # every line of standard error a JSON object
            logging.getLogger("hookline").info(line)
        else:
            print(line, file=sys.stderr, flush=True)

    from dsl.access import parse_networks
    from .queue import open_store
    try:
        open_store(args.store)          # an unknown scheme is a usage error, before serving
    except ValueError as exc:
        print(f"hookline serve: --store: {exc}", file=sys.stderr)
        return 2
    trusted, bad = parse_networks([c for c in args.trusted_proxies.split(",") if c.strip()])
    if bad:
        print(f"hookline serve: --trusted-proxies: {bad[0][1]}", file=sys.stderr)
        return 2
    admin = None
    if args.admin_prefix:
        token = os.environ.get("HOOKLINE_ADMIN_TOKEN", "")
        if len(token) < 16:
            print("hookline serve: --admin-prefix needs HOOKLINE_ADMIN_TOKEN (16 characters or more)",
                  file=sys.stderr)
            return 2
        admin = (args.admin_prefix.rstrip("/"), token)
    return serve(pipelines, args.host, args.port, args.workers, args.shutdown_timeout, ready=ready,
                 store_url=args.store, max_backlog=args.max_backlog, visibility_s=args.visibility_s,
                 admin=admin, trusted=trusted, delivery_workers=args.delivery_workers,
                 delivery_nice=args.delivery_nice, loop=loop, metrics_port=args.metrics_port, access=access,
                 recompile=lambda: dsl.compile_paths(args.paths),
                 watch_paths=args.paths if args.reload else None,
                 allow_hosts=tuple(h.strip() for h in args.allow_hosts.split(",") if h.strip()))


def _openapi(args) -> int:
    """The document on stdout; diagnostics (as ``lint`` prints them) on stderr, exit 1 on errors."""
    import json
    from .openapi import document
    missing = [p for p in args.paths if not Path(p).exists()]
    for p in missing:
        print(f"{p}:1:1: not-found: no such file or directory", file=sys.stderr)
    pipelines, problems = dsl.compile_paths([p for p in args.paths if p not in missing], require_env=False)
    errors = [d for d in problems if d.severity == "error"]
    for d in errors:
        print(d, file=sys.stderr)
    if errors or missing:
        print(f"hookline openapi: {len(errors) + len(missing)} error(s)", file=sys.stderr)
        return 1
    json.dump(document(pipelines, title=args.title), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _schema(args) -> int:
    if args.tests:
        from .testing.spec import tests_schema_text
        sys.stdout.write(tests_schema_text())
        return 0
    sys.stdout.write(dsl.schema_text())
    return 0
