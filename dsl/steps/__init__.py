"""Step kinds. One kind = one module here = one line in KINDS.

A kind module defines ``KEY`` (its YAML key), ``SCHEMA`` (the editor schema
of the value under that key), ``SNIPPET`` (an editor snippet) and
``compile(cc, path, step_id)`` returning a frozen step with ``id``,
``is_async``, ``run(ctx)`` and, when asynchronous, ``arun(ctx)``.
"""
from . import call, route, transform

KINDS = (
    transform,
    call,
    route,
)

BY_KEY = {kind.KEY: kind for kind in KINDS}
