"""``hookline``: serve, lint and schema.

Exit codes: 0 success, 1 the pipelines have errors, 2 wrong usage.
Diagnostics go to standard output as ``file:line:col: code: message``.
"""
from __future__ import annotations

import argparse
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
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port (default 1)")
    serve.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S",
                       help="on SIGTERM, wait this long for running requests (default 10)")
    serve.set_defaults(func=_serve)
    lint = sub.add_parser("lint", help="check pipeline files; print every problem")
    lint.add_argument("paths", nargs="+", metavar="PATH")
    lint.add_argument("--require-env", action="store_true",
                      help="a missing ${env:...} variable is an error, as for serve (default: a warning)")
    lint.set_defaults(func=_lint)
    schema = sub.add_parser("schema", help="print the editor JSON Schema of the DSL")
    schema.set_defaults(func=_schema)
    return parser


def _compile(paths, require_env=True):
    """Compile and print every diagnostic; return (pipelines, errors)."""
    missing = [p for p in paths if not Path(p).exists()]
    for p in missing:
        print(f"{p}:1:1: not-found: no such file or directory")
    pipelines, problems = dsl.compile_paths([p for p in paths if p not in missing], require_env=require_env)
    for d in problems:
        print(d)
    errors = [d for d in problems if d.severity == "error"]
    return pipelines, errors + missing


def _lint(args) -> int:
    pipelines, errors = _compile(args.paths, require_env=args.require_env)
    files = len(dsl.pipeline_files([p for p in args.paths if Path(p).exists()]))
    if errors:
        print(f"hookline lint: {len(errors)} error(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"hookline lint: {files} file(s), {len(pipelines)} pipeline(s), no errors", file=sys.stderr)
    return 0


def _serve(args) -> int:
    from .serve import configure_logging, serve
    pipelines, problems = _compile(args.paths)
    if problems:
        print(f"hookline serve: not starting: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    if not pipelines:
        print("hookline serve: not starting: no pipelines found", file=sys.stderr)
        return 1
    configure_logging()

    def ready(sockets):
        port = sockets[0].getsockname()[1]
        print(f"hookline: serving {len(pipelines)} pipeline(s) on http://{args.host}:{port} "
              f"(workers={args.workers})", file=sys.stderr, flush=True)

    return serve(pipelines, args.host, args.port, args.workers, args.shutdown_timeout, ready=ready)


def _schema(args) -> int:
    sys.stdout.write(dsl.schema_text())
    return 0
