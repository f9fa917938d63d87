"""``route``: choose the first branch whose ``when`` is true.

    - id: decide
      route:
        - when: "steps.stock.status == `409`"
          respond: {status: 409, body: "{error: 'out_of_stock'}"}
        - otherwise:
            steps: [{id: note, transform: "'ok'"}]

A branch runs its nested ``steps`` and, if it has ``respond``, ends the
pipeline with that response. No branch matching is not an error: the
pipeline goes on. The step's output is ``{branch: <index>}`` (``null`` when
none matched).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..runtime import arun_steps, evaluate, run_steps, truthy
from ..spec import doc, expression, strict

KEY = "route"
_BODY = {
    "steps": {"$ref": "#/definitions/steps"},
    "respond": {"$ref": "#/definitions/respond"},
}
SCHEMA = doc({"type": "array", "minItems": 1, "items": strict({
    "when": expression("Condition; the branch is taken when it is true (not false/null/empty)."),
    "otherwise": doc(strict(_BODY), "The branch taken when no `when` matched; must be last."),
    **_BODY,
}, oneOf=[{"required": ["when"]}, {"required": ["otherwise"]}])},
    "Branches tried in order; the first whose `when` is true runs.")
SNIPPET = {"label": "route step", "body": {"id": "${1:decide}", "route": [
    {"when": "${2:steps.call.status == `409`}", "respond": {"status": 409}},
    {"otherwise": {"steps": []}}]}}


@dataclass(frozen=True, slots=True)
class Branch:
    when: object        # Expression, or None for otherwise
    steps: tuple
    respond: object


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    branches: tuple
    where: str
    is_async: bool

    def _choose(self, ctx):
        for index, branch in enumerate(self.branches):
            if branch.when is None or truthy(evaluate(branch.when, ctx, self.where)):
                ctx.steps[self.id] = {"branch": index}
                return branch
        ctx.steps[self.id] = {"branch": None}
        return None

    def run(self, ctx) -> None:
        branch = self._choose(ctx)
        if branch is not None:
            run_steps(branch.steps, ctx)
            if ctx.response is None and branch.respond is not None:
                ctx.response = branch.respond

    async def arun(self, ctx) -> None:
        branch = self._choose(ctx)
        if branch is not None:
            await arun_steps(branch.steps, ctx)
            if ctx.response is None and branch.respond is not None:
                ctx.response = branch.respond


def compile(cc, path, step_id):
    branches = []
    items = cc.get(path + (KEY,))
    for i, item in enumerate(items):
        bpath = path + (KEY, i)
        branches.append(_branch(cc, bpath, item, last=i == len(items) - 1))
    if any(b is None for b in branches):
        return None
    is_async = any(s.is_async for b in branches for s in b.steps)
    return Route(step_id, tuple(branches), cc.where(path, step_id), is_async)


def _branch(cc, bpath, item, last):
    if "otherwise" in item:
        if not last:
            cc.error(bpath + ("otherwise",), "bad-branch", "'otherwise' must be the last branch", key=True)
        for extra in ("steps", "respond"):
            if extra in item:
                cc.error(bpath + (extra,), "bad-branch",
                         f"put '{extra}' inside 'otherwise:' (otherwise: {{{extra}: ...}})", key=True)
        when, body = None, bpath + ("otherwise",)
    else:
        when, body = cc.expr(bpath + ("when",)), bpath
    data = cc.get(body)
    with cc.scope():
        steps = cc.steps(body + ("steps",)) if "steps" in data else ()
        respond = cc.respond(body + ("respond",)) if "respond" in data else None
    if steps is None or ("when" in item and when is None):
        return None
    return Branch(when, steps, respond)
