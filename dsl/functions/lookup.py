"""``lookup('table', key, default?)``: a value from one of the pipeline's ``tables:``.

The table name is a literal, resolved when the pipeline loads (an unknown
name is ``unknown-table`` there). Keys are text: a number is looked up by its
JSON text (``404`` finds ``"404"``, as CSV and JSON object keys are text).
A null key, or a key the table lacks, gives ``default`` (null without one).

    >>> from .base import Env
    >>> run = _prepare(("erp_status", NOT_LITERAL), Env(tables={"erp_status": {"404": "NF"}}))
    >>> run("erp_status", 404), run("erp_status", "500", "ERR"), run("erp_status", None)
    ('NF', 'ERR', None)
"""
from __future__ import annotations

from .base import NOT_LITERAL, ArgError, Function, Param  # noqa: F401 (doctest)


def key_text(value) -> str | None:
    """The text a key is stored and looked up by; None for what cannot be a key."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _prepare(literals, env):
    from ..jmes_functions import copy_json     # not at import: dsl.jmes_functions imports this package
    name = literals[0]
    table = env.tables.get(name)
    if table is None:
        known = f"known: {', '.join(sorted(env.tables))}" if env.tables else "the pipeline has no tables: key"
        raise ArgError(0, f"names no table ({known})", "unknown-table")

    def run(name, key, default=None):
        return copy_json(default if key is None else table.get(key_text(key), default))
    return run


FUNCTIONS = (
    Function("lookup", (Param("table", ("string",), literal=True), Param("key", ("string", "number", "null")),
                             Param("default", optional=True)),
             _prepare, null_in=False),
)
