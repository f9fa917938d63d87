"""A directory (or list) of pipeline files → compiled pipelines, with the
checks that span files: unique pipeline names, no two pipelines on one route.

    >>> pipelines, problems = compile_paths(["pipelines"])   # doctest: +SKIP
"""
from __future__ import annotations

import re
from pathlib import Path

from .compiler import compile_text
from .errors import Diagnostic

_PARAM = re.compile(r"\{[^{}]*\}")


def is_test_file(path) -> bool:
    """A pipeline test (``NAME.test.yaml``, or the older ``NAME_test.yaml``), not a pipeline.

    >>> is_test_file("pipelines/orders.test.yaml"), is_test_file("pipelines/orders.yaml")
    (True, False)
    """
    path = Path(path)
    return path.suffix in (".yaml", ".yml") and (path.stem.endswith(".test") or path.stem.endswith("_test"))


def yaml_files(paths, tests: bool) -> list[Path]:
    """The YAML files under the directories in ``paths`` (recursively, sorted, skipping
    hidden folders and folders named ``schemas`` or ``tables`` (JSON Schemas, lookup tables))
    that are pipeline tests (``tests``) or pipelines; a file named in ``paths`` is taken as it is."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += [f for f in sorted(p.rglob("*.y*ml"))
                      if f.suffix in (".yaml", ".yml") and is_test_file(f) == tests
                      and not any(part.startswith(".") or part in ("schemas", "tables")
                                  for part in f.relative_to(p).parts[:-1])]
        else:
            files.append(p)
    return files


def pipeline_files(paths) -> list[Path]:
    """The pipeline files named by ``paths``: directories are searched
    recursively for ``*.yaml``/``*.yml``, skipping pipeline tests
    (``*.test.yaml``, ``*_test.yaml``), hidden folders and folders named
    ``schemas`` (JSON Schemas referenced by ``$ref``)."""
    return yaml_files(paths, tests=False)


def compile_paths(paths, env=None, require_env=True):
    """Compile every pipeline file: ``([Pipeline], sorted [Diagnostic])``."""
    pipelines, problems = [], []
    for file in pipeline_files(paths):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Diagnostic(str(file), 1, 1, "unreadable", getattr(exc, "strerror", None) or str(exc)))
            continue
        pipeline, found = compile_text(text, str(file), env=env, require_env=require_env)
        problems += found
        if pipeline is not None:
            pipelines.append(pipeline)
    problems += _conflicts(pipelines)
    return pipelines, sorted(set(problems))


def _conflicts(pipelines):
    problems, names, routes = [], {}, {}
    for p in pipelines:
        if p.name in names:
            problems.append(Diagnostic(p.file, 1, 1, "duplicate-pipeline",
                                       f"pipeline name '{p.name}' is already used in {names[p.name]}"))
        names.setdefault(p.name, p.file)
        shape = _PARAM.sub("{}", p.path)
        for method in sorted(p.methods):
            other = routes.setdefault((shape, method), p)
            if other is not p:
                problems.append(Diagnostic(p.file, 1, 1, "duplicate-route",
                                           f"{method} {p.path} is already served by pipeline '{other.name}' ({other.file})"))
    return problems
