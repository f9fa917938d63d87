"""The admin endpoints of ``hookline serve --admin-prefix`` (docs/cli.md#admin-endpoints).

Real HTTP against a real ``hookline serve`` on tests/pipelines/async/deliver.yaml,
whose one async branch calls the recording destination of test_async_delivery:
a request id planned to get a 400 there is dead-lettered at once, any other is
delivered. What the endpoints answer is compared with what the CLI
(``hookline deliveries``/``hookline dlq``) prints for the same store, since the
docs say they are "the same operations".
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import requests

from conftest import HOOKLINE
from test_async_delivery import (  # noqa: F401  (dest, servers, store, *_store are fixtures)
    ADMIN, DELIVER, dead_job, dest, hookline, jobs, post, redis_store, servers, show, sqlite_store,
    store, wait_until)

PROBLEM = "application/problem+json"
CHALLENGE = 'Bearer realm="hookline-admin"'
SHORTEST_TOKEN = "sixteen-chars-ok"     # the documented minimum length, exactly
JOB_FIELDS = {"id", "delivery", "pipeline", "branch", "version", "state", "attempt", "created_at", "due_at",
              "last_error"}


# --- helpers ------------------------------------------------------------------------------------

def admin_server(servers, dest, store, token=ADMIN[1]):
    return servers([DELIVER], dest, store, extra=("--admin-prefix", ADMIN[0]),
                   env={"HOOKLINE_ADMIN_TOKEN": token})


def call(server, method, path, token=ADMIN[1], **kwargs) -> requests.Response:
    """``method ADMIN_PREFIX+path``, with ``Authorization: Bearer token`` unless token is None."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.request(method, server.url + ADMIN[0] + path, headers=headers, timeout=10, **kwargs)


def answer(resp):
    """The JSON of a 200 answer."""
    assert resp.status_code == 200, (resp.request.method, resp.url, resp.status_code, resp.text)
    assert resp.headers["Content-Type"].split(";")[0] == "application/json", resp.headers
    return resp.json()


def problem(resp, status, slug) -> dict:
    """The problem document of an error answer (docs/errors.md)."""
    where = (resp.request.method, resp.url, resp.status_code, resp.text)
    assert resp.status_code == status, where
    assert resp.headers["Content-Type"] == PROBLEM, where
    doc = resp.json()
    assert doc["type"] == f"https://hookline.dev/problems/{slug}" and doc["status"] == status, where
    assert doc.keys() == {"type", "title", "status", "detail"}, where
    return doc


def accepted(server, rid) -> str:
    resp = post(server.url + "/a/deliver", rid)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def job_of(server, delivery) -> dict:
    (job,) = answer(call(server, "GET", f"/deliveries/{delivery}"))["jobs"]
    return job


def settled(server, delivery, state) -> dict:
    """The one job of ``delivery``, once the admin endpoint shows it in ``state``."""
    wait_until(lambda: job_of(server, delivery)["state"] == state, 15, f"{delivery} {state}", poll=0.1)
    return job_of(server, delivery)


def ids(listed) -> list[str]:
    return [job["id"] for job in listed]


# --- 1. off by default --------------------------------------------------------------------------

def test_without_admin_prefix_the_admin_paths_are_an_ordinary_404(dest, servers, sqlite_store):
    server = servers([DELIVER], dest, sqlite_store, env={"HOOKLINE_ADMIN_TOKEN": ADMIN[1]})
    resp = post(server.url + "/a/deliver", "off")
    assert resp.status_code == 202 and "Location" not in resp.headers, resp.headers
    elsewhere = problem(requests.get(server.url + "/_elsewhere/deliveries", timeout=10), 404, "not-found")
    for method, path in [("GET", "/deliveries"), ("GET", f"/deliveries/{resp.json()['id']}"),
                         ("GET", "/dlq"), ("DELETE", "/dlq"), ("POST", "/dlq/replay")]:
        for token in (None, ADMIN[1]):
            got = call(server, method, path, token=token)
            doc = problem(got, 404, "not-found")
            assert "WWW-Authenticate" not in got.headers, got.headers
            # word for word what any other unknown path gets: nothing says admin exists
            assert doc == {**elsewhere, "detail": elsewhere["detail"].replace("/_elsewhere/deliveries",
                                                                                ADMIN[0] + path)}, doc
            assert "admin" not in got.text.lower(), got.text


# --- 2. the token -------------------------------------------------------------------------------

def test_only_the_right_bearer_token_gets_in_and_it_never_shows(dest, servers, sqlite_store):
    server = admin_server(servers, dest, sqlite_store, token=SHORTEST_TOKEN)
    wrong = {"none": {}, "wrong": {"Authorization": "Bearer not-the-admin-token-at-all"},
             "prefix": {"Authorization": f"Bearer {SHORTEST_TOKEN[:-1]}"},
             "longer": {"Authorization": f"Bearer {SHORTEST_TOKEN}x"},
             "no scheme": {"Authorization": SHORTEST_TOKEN},
             "basic": {"Authorization": f"Basic {SHORTEST_TOKEN}"}}
    seen = []
    for label, headers in wrong.items():
        # an unknown endpoint too: without the token, nobody learns which paths exist
        for method, path in [("GET", "/deliveries"), ("DELETE", "/dlq"), ("GET", "/no-such-endpoint")]:
            resp = requests.request(method, server.url + ADMIN[0] + path, headers=headers, timeout=10)
            doc = problem(resp, 401, "unauthorized")
            assert resp.headers["WWW-Authenticate"] == CHALLENGE, (label, resp.headers)
            assert doc["title"] == "Unauthorized", doc
            seen.append(resp.text)
    right = call(server, "GET", "/deliveries", token=SHORTEST_TOKEN)
    assert answer(right) == [] and "WWW-Authenticate" not in right.headers
    lower = requests.get(server.url + ADMIN[0] + "/deliveries", timeout=10,
                         headers={"Authorization": f"bearer {SHORTEST_TOKEN}"})     # the scheme in any case
    assert answer(lower) == []
    seen += [right.text, call(server, "GET", "/nope", token=SHORTEST_TOKEN).text]
    assert not [text for text in seen if SHORTEST_TOKEN in text]
    assert server.proc.stop() == 0
    log = server.log()
    assert "hookline: serving" in log, log          # the output was read, and it holds no token
    assert SHORTEST_TOKEN not in "".join(server.lines), log


# --- 3. every documented endpoint, on both stores -----------------------------------------------

def test_deliveries_list_and_show_answer_what_the_cli_prints(dest, servers, store):
    server = admin_server(servers, dest, store)
    dest.plan("first", 400)
    deliveries = [accepted(server, rid) for rid in ("first", "second", "third")]
    first, second, third = (settled(server, d, s) for d, s in zip(deliveries, ("dead", "done", "done")))

    listed = answer(call(server, "GET", "/deliveries"))
    assert ids(listed) == ids([first, second, third]), "not oldest first"
    assert all(job.keys() == JOB_FIELDS for job in listed), listed
    assert len({job["version"] for job in listed}) == 1 and re.fullmatch(r"[0-9a-f]{12}", listed[0]["version"])
    assert [(j["pipeline"], j["branch"], j["state"], j["attempt"]) for j in listed] == [
        ("as-deliver", "dest", "dead", 1), ("as-deliver", "dest", "done", 1), ("as-deliver", "dest", "done", 1)]
    assert "destination answered 400" in listed[0]["last_error"], listed[0]
    cli = jobs(store)
    assert [(j["id"], j["state"], j["branch"], j["attempt"], j["delivery"]) for j in cli] == [
        (j["id"], j["state"], f"{j['pipeline']}/{j['branch']}", j["attempt"], j["delivery"]) for j in listed]

    assert ids(answer(call(server, "GET", "/deliveries?state=done"))) == ids([second, third])
    assert ids(answer(call(server, "GET", "/deliveries?state=dead"))) == ids([first])
    assert answer(call(server, "GET", "/deliveries?state=pending")) == []
    assert ids(answer(call(server, "GET", "/deliveries?limit=1"))) == ids([first])
    assert ids(answer(call(server, "GET", "/deliveries?state=done&limit=1"))) == ids([second])
    assert ids(answer(call(server, "GET", "/deliveries?limit=1000"))) == ids(listed)

    by_delivery = answer(call(server, "GET", f"/deliveries/{deliveries[1]}"))
    assert by_delivery == {"delivery": deliveries[1], "jobs": [second]} == show(deliveries[1], store)
    by_job = answer(call(server, "GET", f"/deliveries/{second['id']}"))
    assert by_job == show(second["id"], store)
    assert by_job == {**second, "payload": by_job["payload"]}
    assert by_job["payload"]["request"]["body"]["id"] == "second", by_job

    unknown = "0123456789abcdef0123456789abcdef"
    problem(call(server, "GET", f"/deliveries/{unknown}"), 404, "not-found")
    assert hookline("deliveries", "show", unknown, store=store).returncode == 1


def test_dlq_list_show_replay_one_replay_all_and_purge(dest, servers, store):
    server = admin_server(servers, dest, store)
    dead = [dead_job(dest, server, store, rid) for rid in ("dlq-1", "dlq-2", "dlq-3")]
    listed = answer(call(server, "GET", "/dlq"))
    assert ids(listed) == ids(dead) == ids(jobs(store, "dead")), "not the dead jobs, oldest first"
    assert {job["state"] for job in listed} == {"dead"} and all(job.keys() == JOB_FIELDS for job in listed)
    assert ids(answer(call(server, "GET", "/dlq?limit=2"))) == ids(dead[:2])
    shown = answer(call(server, "GET", f"/dlq/{dead[0]['id']}"))
    cli = hookline("dlq", "show", dead[0]["id"], store=store)
    assert cli.returncode == 0 and shown == json.loads(cli.stdout) == show(dead[0]["id"], store), cli
    assert shown["state"] == "dead" and shown["payload"]["request"]["body"]["id"] == "dlq-1", shown

    assert answer(call(server, "POST", f"/dlq/{dead[0]['id']}/replay")) == {"replayed": 1}
    wait_until(lambda: "dlq-1" in dest.delivered(), 10, "the replayed job delivered")
    assert settled(server, dead[0]["delivery"], "done")["attempt"] == 1
    assert [c.status for c in dest.of("dlq-1")] == [400, 200]
    assert ids(answer(call(server, "GET", "/dlq"))) == ids(dead[1:])
    problem(call(server, "POST", f"/dlq/{dead[0]['id']}/replay"), 404, "not-found")   # no longer dead
    gone = problem(call(server, "GET", f"/dlq/{dead[0]['id']}"), 404, "not-found")      # not in the DLQ
    assert "not in the dead-letter store (the job is done" in gone["detail"], gone
    problem(call(server, "POST", "/dlq/0123456789abcdef/replay"), 404, "not-found")

    assert answer(call(server, "POST", "/dlq/replay")) == {"replayed": 2}
    wait_until(lambda: {"dlq-2", "dlq-3"} <= dest.delivered(), 10, "both replayed jobs delivered")
    assert answer(call(server, "GET", "/dlq")) == []
    assert answer(call(server, "POST", "/dlq/replay")) == {"replayed": 0}

    doomed = dead_job(dest, server, store, "dlq-purged")
    assert answer(call(server, "DELETE", "/dlq")) == {"purged": 1}
    assert answer(call(server, "GET", "/dlq")) == [] == jobs(store, "dead")
    problem(call(server, "GET", f"/deliveries/{doomed['id']}"), 404, "not-found")
    assert answer(call(server, "DELETE", "/dlq")) == {"purged": 0}
    assert "dlq-purged" not in dest.delivered()
    assert [j["state"] for j in answer(call(server, "GET", "/deliveries"))] == ["done"] * 3


# --- 4. wrong methods, unknown paths ------------------------------------------------------------

WRONG = [("POST", "/deliveries"), ("DELETE", "/deliveries"), ("PUT", "/dlq"), ("POST", "/dlq"),
         ("PATCH", "/dlq"), ("GET", "/dlq/replay"), ("DELETE", "/dlq/replay"), ("OPTIONS", "/deliveries"),
         ("GET", "/dlq/abc/replay"), ("DELETE", "/deliveries/abc"), ("POST", "/deliveries/abc")]
UNKNOWN = ["/", "/nope", "/deliveries/", "/deliveries/a/b", "/deliveries/a.b", "/deliveries/" + "a" * 65,
           "/DELIVERIES", "/dlq/", "/dlq/replay/more", "/dlq/abc/replay/more",
           "/deliveries/%2e%2e", "//deliveries"]


def test_wrong_methods_and_unknown_admin_paths_are_404_problems(dest, servers, sqlite_store):
    server = admin_server(servers, dest, sqlite_store)
    for method, path in WRONG + [("GET", path) for path in UNKNOWN]:
        doc = problem(call(server, method, path), 404, "not-found")
        assert doc["title"] == "Not Found", doc
    # none of that changed anything, and the server still answers
    assert answer(call(server, "GET", "/deliveries")) == []
    assert "Traceback" not in server.log(), server.log()


def test_a_request_body_on_an_admin_endpoint_is_ignored_not_a_dropped_connection(dest, servers, sqlite_store):
    server = admin_server(servers, dest, sqlite_store)      # e.g. curl -X POST -d '{}' …/dlq/replay
    problem(call(server, "POST", "/dlq/replay", token=None, data=b"{}"), 401, "unauthorized")
    assert answer(call(server, "POST", "/dlq/replay", data=b'{"all": true}')) == {"replayed": 0}
    assert answer(call(server, "GET", "/deliveries", data=b"x" * 60_000)) == []
    doc = problem_with(call(server, "POST", "/dlq/replay", data=b"x" * 100_000), 413, "body-too-large")
    assert doc["max_body_bytes"] == 65536, doc
    chunked = call(server, "POST", "/dlq/replay", data=iter([b"x" * 50_000] * 3))     # no Content-Length
    assert problem_with(chunked, 413, "body-too-large")["max_body_bytes"] == 65536
    assert answer(call(server, "GET", "/dlq")) == []                                 # the connection still serves
    assert "Traceback" not in server.log(), server.log()


def problem_with(resp, status, slug) -> dict:
    """A problem document with the extra members of its type (errors.md)."""
    assert resp.status_code == status and resp.headers["Content-Type"] == PROBLEM, (resp.status_code, resp.text)
    doc = resp.json()
    assert doc["type"] == f"https://hookline.dev/problems/{slug}", doc
    return doc


BAD_QUERIES = ["/deliveries?limit=0", "/deliveries?limit=1001", "/deliveries?limit=" + "9" * 5000,
               "/deliveries?limit=-1", "/deliveries?limit=abc",
               "/deliveries?limit=", "/deliveries?limit=1&limit=2", "/deliveries?limit=%D9%A1",
               "/deliveries?state=failed", "/deliveries?state=DEAD", "/dlq?limit=0"]


def test_a_limit_or_state_out_of_range_is_a_400_naming_it(dest, servers, sqlite_store):
    server = admin_server(servers, dest, sqlite_store)
    for path in BAD_QUERIES:
        doc = problem(call(server, "GET", path), 400, "bad-query")
        name = "limit" if "limit" in path else "state"
        assert doc["detail"].startswith(f"{name} must be"), (path, doc)
    assert answer(call(server, "GET", "/deliveries?limit=1000&state=dead")) == []


# --- 5. serve refuses to start without a long enough token --------------------------------------

@pytest.mark.parametrize("token", [None, "", SHORTEST_TOKEN[:-1]], ids=["unset", "empty", "15-chars"])
def test_admin_prefix_without_a_long_enough_token_exits_2_saying_why(token, sqlite_store):
    env = {k: v for k, v in os.environ.items() if k != "HOOKLINE_ADMIN_TOKEN"}
    env["DEST_URL"] = "http://127.0.0.1:9"      # never called: it must not start
    if token is not None:
        env["HOOKLINE_ADMIN_TOKEN"] = token
    out = subprocess.run([*HOOKLINE, "serve", str(DELIVER), "--port", "0", "--store", sqlite_store,
                          "--admin-prefix", ADMIN[0]], env=env, capture_output=True, text=True, timeout=20)
    assert out.returncode == 2, out
    (line,) = out.stderr.splitlines()
    assert line.startswith("hookline serve: --admin-prefix ") and "HOOKLINE_ADMIN_TOKEN" in line, line
    assert "16" in line, line
    assert out.stdout == "" and "serving" not in line, out
    assert not token or token not in out.stderr
