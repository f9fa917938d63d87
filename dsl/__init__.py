"""Hookline's language: pipeline YAML → diagnostics or frozen pipelines.

Public API::

    compile_paths(paths, env=None) -> ([Pipeline], [Diagnostic])
    compile_text(text, file, env=None) -> (Pipeline | None, [Diagnostic])
    schema_text() -> str            # the editor JSON Schema
    Diagnostic, CompileError

This package never imports ``engine``.
"""
from .compiler import compile_text
from .errors import CompileError, Diagnostic, HooklineDslError
from .project import compile_paths, is_test_file, pipeline_files, yaml_files
from .spec import pipeline_schema, schema_text

__all__ = ["compile_paths", "compile_text", "pipeline_files", "is_test_file", "yaml_files", "schema_text",
           "pipeline_schema",
           "Diagnostic", "CompileError", "HooklineDslError"]
