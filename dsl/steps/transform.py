"""``transform``: reshape the context with one JMESPath expression.

    - id: order
      transform: "{id: request.body.id, lines: request.body.line_items[].{sku: sku, qty: quantity}}"

The step's output (``steps.order``) is the expression's value.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..runtime import evaluate
from ..spec import expression

KEY = "transform"
SCHEMA = expression("Reshape data: the step's output is this expression's value.")
SNIPPET = {"label": "transform step", "body": {"id": "${1:name}", "transform": "${2:request.body}"}}


@dataclass(frozen=True, slots=True)
class Transform:
    id: str
    expr: object
    where: str
    is_async = False

    def run(self, ctx) -> None:
        ctx.steps[self.id] = evaluate(self.expr, ctx, self.where)


def compile(cc, path, step_id):
    expr = cc.expr(path + (KEY,))
    return Transform(step_id, expr, cc.where(path, step_id)) if expr else None
