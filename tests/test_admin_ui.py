"""The admin UI over HTTP (docs/operations.md#admin-ui): login, the session cookie, CSRF,
security headers, error pages, redaction, a store that is down, and ``--workers 2``.

Real ``hookline serve`` on tests/pipelines/ui — orders (an async branch to the recording
destination of test_async_delivery), lookup (a call while the client waits), relay (a
header the history redacts, copied into a job), legacy (a file lint warns about), quiet
(not recorded) — with
``requests`` as the browser. The Chromium end-to-end flow is in test_admin_ui_browser.py.
"""
from __future__ import annotations

import json
import re
import shutil
import uuid
from urllib.parse import quote

import requests
from hypothesis import given, strategies as st

from conftest import HTTP_PROPERTY_SETTINGS, ROOT
from engine.ui.session import MAX_AGE_S, Sessions
from test_async_delivery import (  # noqa: F401  (dest, servers, sqlite_store are fixtures)
    ADMIN, dest, redis_store, servers, sqlite_store, store, wait_until)
from test_store_down import LEAKS, redis_server  # noqa: F401  (a fixture)

UI_PIPELINES = ROOT / "tests" / "pipelines" / "ui"
UI = ADMIN[0] + "/ui"
TOKEN = ADMIN[1]
HTML = "text/html; charset=utf-8"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
GET_PAGES = ["/", "/pipelines/ui-orders", "/search", "/search?q=x", "/runs/abc", "/deliveries",
             "/deliveries?state=dead", "/deliveries/abc", "/dlq"]
POSTS = ["/logout", "/dlq/replay", "/dlq/purge", "/dlq/abc/replay"]


# --- helpers ------------------------------------------------------------------------------------

def ui_server(servers, dest, store, extra=(), paths=(UI_PIPELINES,)):
    return servers(list(paths), dest, store, extra=("--admin-prefix", ADMIN[0], *extra),
                   env={"HOOKLINE_ADMIN_TOKEN": TOKEN})


def login(server, token=TOKEN, headers=None) -> requests.Session:
    """A session logged in through the form (the cookie in its jar)."""
    s = requests.Session()
    resp = s.post(server.url + UI + "/login", data={"token": token, "next": "/ui/"}, headers=headers,
                  allow_redirects=False, timeout=10)
    assert resp.status_code == 303, (resp.status_code, resp.text[:300])
    return s


def csrf_of(page: requests.Response) -> str:
    found = set(re.findall(r'name="csrf" value="([^"]*)"', page.text))
    assert len(found) == 1 and len(next(iter(found))) == 64, found
    return found.pop()


def set_cookie(resp) -> dict:
    """The Set-Cookie header's attributes, lower-case names (flags map to True)."""
    name_value, *attrs = [a.strip() for a in resp.headers["Set-Cookie"].split(";")]
    out = {"": name_value}
    for a in attrs:
        k, eq, v = a.partition("=")
        out[k.lower()] = v if eq else True
    return out


def is_login_redirect(resp) -> bool:
    return resp.status_code == 303 and resp.headers["Location"].startswith(UI + "/login?next=")


def dead_order(server, dest, request_id="") -> str:
    """An order whose delivery the destination refuses (400): its one job is dead; the job id."""
    rid = f"ui-{uuid.uuid4().hex[:8]}"
    dest.plan(rid, 400)
    resp = requests.post(server.url + "/u/orders", json={"id": rid, "note": "n"}, headers={"X-Request-Id": request_id},
                         timeout=10)
    assert resp.status_code == 200, resp.text
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    def dead():
        jobs = requests.get(server.url + ADMIN[0] + "/dlq", headers=bearer, timeout=10).json()
        return [j["id"] for j in jobs if j["state"] == "dead"]
    wait_until(dead, 15, "the job to die")
    (job,) = dead()
    return job


# --- login and the cookie -----------------------------------------------------------------------

def test_no_page_without_a_valid_session(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    good = login(server).cookies["hookline_ui"]
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    for cookie in (None, "", "garbage", forged, good.replace("hookline_ui", "hookline_xx"), "2|" * 300):
        jar = {} if cookie is None else {"hookline_ui": cookie}
        for page in GET_PAGES:
            resp = requests.get(server.url + UI + page, cookies=jar, allow_redirects=False, timeout=10)
            assert is_login_redirect(resp), (cookie, page, resp.status_code, resp.headers)
            assert resp.headers["Content-Security-Policy"] == CSP and resp.headers["Cache-Control"] == "no-store"
        for page in POSTS:
            resp = requests.post(server.url + UI + page, cookies=jar, data={"csrf": "x", "confirm": "yes"},
                                 allow_redirects=False, timeout=10)
            assert is_login_redirect(resp), (cookie, page, resp.status_code)
    # where the login sends you back to: the page asked for, never another host or prefix
    back = requests.get(server.url + UI + "/deliveries?state=dead", allow_redirects=False, timeout=10)
    form = requests.get(server.url + back.headers["Location"], timeout=10)
    assert 'name="next" value="/ui/deliveries?state=dead"' in form.text, form.text
    for evil in ("//evil.example/", "/ui/../metrics", "https://evil.example/ui/", "/ui/\r\nX: y"):
        resp = requests.post(server.url + UI + "/login", data={"token": TOKEN, "next": evil},
                             allow_redirects=False, timeout=10)
        assert resp.status_code == 303 and resp.headers["Location"] == UI + "/", (evil, resp.headers)


def test_the_login_form_refuses_a_wrong_token_and_sets_a_strict_httponly_cookie(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    for wrong in ("", "nope", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        resp = requests.post(server.url + UI + "/login", data={"token": wrong}, allow_redirects=False, timeout=10)
        assert resp.status_code == 401 and "Set-Cookie" not in resp.headers, (wrong, resp.headers)
        assert "That is not the admin token." in resp.text and resp.headers["Content-Type"] == HTML
        assert TOKEN not in resp.text
    wait_until(lambda: "".join(server.lines).count("admin ui: login refused for 127.0.0.1: not the admin token") == 5,
               10, "a warning per refused login")
    resp = requests.post(server.url + UI + "/login", data={"token": TOKEN, "next": "/ui/dlq"},
                         allow_redirects=False, timeout=10)
    assert resp.status_code == 303 and resp.headers["Location"] == UI + "/dlq", resp.headers
    cookie = set_cookie(resp)
    assert cookie["path"] == UI + "/" and cookie["max-age"] == "28800", cookie
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and "secure" not in cookie, cookie
    assert TOKEN not in cookie[""]
    page = requests.get(server.url + UI + "/dlq", cookies={"hookline_ui": cookie[""].partition("=")[2]}, timeout=10)
    assert page.status_code == 200 and "<h1>Dead letters</h1>" in page.text, page.text[:300]


def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store, extra=("--trusted-proxies", "127.0.0.1/32"))
    for headers in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "for=192.0.2.1;proto=https"}):
        resp = requests.post(server.url + UI + "/login", data={"token": TOKEN}, headers=headers,
                             allow_redirects=False, timeout=10)
        assert set_cookie(resp).get("secure") is True, (headers, resp.headers)
    plain = requests.post(server.url + UI + "/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "http"},
                          allow_redirects=False, timeout=10)
    assert "secure" not in set_cookie(plain)


def test_an_untrusted_client_saying_https_gets_no_secure_flag(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)      # no --trusted-proxies
    resp = requests.post(server.url + UI + "/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"},
                         allow_redirects=False, timeout=10)
    assert "secure" not in set_cookie(resp)


def test_logout_clears_the_cookie_and_needs_the_csrf_token(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    s = login(server)
    refused = s.post(server.url + UI + "/logout", data={"csrf": "0" * 64}, allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and "CSRF" in refused.text, refused.text
    csrf = csrf_of(s.get(server.url + UI + "/", timeout=10))
    out = s.post(server.url + UI + "/logout", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and out.headers["Location"] == UI + "/login?done=logged-out"
    cookie = set_cookie(out)
    assert cookie[""] == "hookline_ui=" and cookie["max-age"] == "0", cookie
    assert is_login_redirect(s.get(server.url + UI + "/", allow_redirects=False, timeout=10))
    assert "You are logged out." in requests.get(server.url + out.headers["Location"], timeout=10).text


def test_a_session_ends_after_eight_hours_and_with_a_new_admin_token():
    now = [1_000_000.0]
    sessions = Sessions(TOKEN, clock=lambda: now[0])
    cookie, sid = sessions.issue()
    now[0] += MAX_AGE_S - 60
    assert sessions.check(cookie) == sid
    assert Sessions("another-admin-token-0123", clock=lambda: now[0]).check(cookie) is None
    now[0] += 120
    assert sessions.check(cookie) is None


# --- CSRF ---------------------------------------------------------------------------------------

def test_state_changes_need_the_sessions_csrf_token(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    job = dead_order(server, dest)
    s, other = login(server), login(server)
    mine = csrf_of(s.get(server.url + UI + "/dlq", timeout=10))
    theirs = csrf_of(other.get(server.url + UI + "/dlq", timeout=10))
    assert mine != theirs
    for data in ({}, {"csrf": ""}, {"csrf": theirs}, {"csrf": mine.upper()}):
        for action in (f"/dlq/{job}/replay", "/dlq/replay", "/dlq/purge"):
            resp = s.post(server.url + UI + action, data={**data, "confirm": "yes"}, allow_redirects=False, timeout=10)
            assert resp.status_code == 403 and resp.headers["Content-Type"] == HTML, (action, data, resp.status_code)
            assert "CSRF token is missing or wrong" in resp.text and "Traceback" not in resp.text
    page = s.get(server.url + UI + "/dlq", timeout=10)
    assert job in page.text, "a refused form changed nothing: the job is still dead"
    unconfirmed = s.post(server.url + UI + "/dlq/purge", data={"csrf": mine}, timeout=10)
    assert "Nothing purged" in unconfirmed.text and job in unconfirmed.text
    purged = s.post(server.url + UI + "/dlq/purge", data={"csrf": mine, "confirm": "yes"}, timeout=10)
    assert "1 dead job(s) purged." in purged.text and job not in purged.text, purged.text


def test_replay_from_the_dlq_page_delivers_the_job(dest, servers, store):
    server = ui_server(servers, dest, store)
    job = dead_order(server, dest)
    s = login(server)
    page = s.get(server.url + UI + "/dlq", timeout=10)
    version = requests.get(server.url + ADMIN[0] + f"/deliveries/{job}", timeout=10,
                           headers={"Authorization": "Bearer " + TOKEN}).json()["version"]
    assert re.fullmatch(r"[0-9a-f]{12}", version) and f"<td><code>{version}</code></td>" in page.text, page.text
    csrf = csrf_of(page)
    resp = s.post(server.url + UI + f"/dlq/{job}/replay", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert resp.status_code == 303 and resp.headers["Location"] == UI + f"/deliveries/{job}?done=replayed"
    wait_until(lambda: "state-done" in s.get(server.url + resp.headers["Location"], timeout=10).text, 15,
               "the replayed job to be delivered")
    again = s.post(server.url + UI + f"/dlq/{job}/replay", data={"csrf": csrf}, timeout=10)
    assert again.status_code == 409 and "Only a dead job can be replayed" in again.text, again.text


# --- headers, errors, limits --------------------------------------------------------------------

def test_every_page_is_html_with_the_security_headers_and_errors_are_pages(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    s = login(server)
    for page in GET_PAGES:
        resp = s.get(server.url + UI + page, allow_redirects=False, timeout=10)
        assert resp.status_code in (200, 404), (page, resp.status_code)
        assert resp.headers["Content-Type"] == HTML and resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Referrer-Policy"] == "no-referrer"
    css = requests.get(server.url + UI + "/static/ui.css", timeout=10)      # no login: the login page uses it
    assert css.status_code == 200 and css.headers["Content-Type"] == "text/css; charset=utf-8" and "body" in css.text
    for path, status, words in [("/no-such-page", 404, "There is no such page."),
                                ("/deliveries?state=bogus", 400, "state must be one of"),
                                ("/pipelines/no-such-pipeline", 404, "No pipeline of that name"),
                                ("/deliveries/" + "x" * 65, 404, "There is no such page.")]:
        resp = s.get(server.url + UI + path, timeout=10)
        assert resp.status_code == status and words in resp.text, (path, resp.status_code, resp.text[:400])
        assert resp.headers["Content-Type"] == HTML and "Traceback" not in resp.text
    wrong_method = s.delete(server.url + UI + "/dlq", timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.headers["Content-Type"] == HTML
    big = s.post(server.url + UI + "/dlq/purge", data={"csrf": "x" * (70 * 1024)}, timeout=10)
    assert big.status_code == 413, big.status_code
    assert s.get(server.url + UI, allow_redirects=False, timeout=10).headers["Location"] == UI + "/"


def test_the_pipeline_page_shows_its_source_and_lint_warnings(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    s = login(server)
    listing = s.get(server.url + UI + "/", timeout=10).text
    for name, route in (("ui-orders", "POST /u/orders"), ("ui-legacy", "GET /u/legacy")):
        assert f'href="{UI}/pipelines/{name}"' in listing and route in listing, listing
    page = s.get(server.url + UI + "/pipelines/ui-legacy", timeout=10).text
    assert '<a href="#L9">9:15</a> <b>warning</b> <code>legacy-yaml</code>' in page, page
    assert '<tr id="L9" class="marked"><td class="ln">9</td><td><pre>    X-Legacy: on</pre>' in page, page
    clean = s.get(server.url + UI + "/pipelines/ui-orders", timeout=10).text
    assert "No diagnostics" in clean and "<pre>          body: request.body</pre>" in clean
    assert requests.get(server.url + "/u/quiet", timeout=10).json() == "ok"
    quiet = re.search(r'<tr>\s*<td><a href="[^"]*/ui-quiet">.*?</tr>', s.get(server.url + UI + "/", timeout=10).text,
                      re.S).group(0)
    assert "not recorded (<code>receive.history: false</code>)" in quiet, quiet
    assert "This pipeline records no runs" in s.get(server.url + UI + "/pipelines/ui-quiet", timeout=10).text


def test_a_session_and_the_run_pages_work_on_every_worker(dest, servers, store):
    server = ui_server(servers, dest, store, extra=("--workers", "2"))
    s = login(server)
    # a new connection each (no keep-alive), until both workers have answered: they accept
    # from one shared socket, and on a busy machine one of them can take 40 in a row
    pages = []

    def workers():
        return set(re.findall(r"hookline\.access\[(\d+)\]: GET /_hookline/ui/dlq 200", "".join(server.lines)))

    def both_answered():
        pages.append(requests.get(server.url + UI + "/dlq", cookies=s.cookies, timeout=10))
        return len(pages) >= 40 and len(workers()) == 2
    wait_until(both_answered, 60, "access lines from both workers", poll=0.01)
    assert all(p.status_code == 200 and "<h1>Dead letters</h1>" in p.text for p in pages)
    csrf = csrf_of(pages[0])
    request_id = "find-me-" + uuid.uuid4().hex[:6]
    job = dead_order(server, dest, request_id)
    resp = s.post(server.url + UI + f"/dlq/{job}/replay", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert resp.status_code == 303, resp.text

    def runs_found():
        page = requests.get(server.url + UI + "/search", params={"q": request_id}, cookies=s.cookies, timeout=10)
        return re.findall(r'href="/_hookline/ui/runs/([0-9a-f]+)"', page.text)
    wait_until(runs_found, 10, "the run, searched by its X-Request-Id")
    (run_id,) = runs_found()
    for _ in range(10):
        run = requests.get(server.url + UI + f"/runs/{run_id}", cookies=s.cookies, timeout=10)
        assert run.status_code == 200 and "<b>shape</b> <span class=\"kind\">transform</span>" in run.text, run.text


def test_a_search_is_shown_as_text(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    s = login(server)
    q = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    page = s.get(server.url + UI + "/search", params={"q": q}, timeout=10).text
    assert "<script>alert" not in page and "<img" not in page, page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page, page


def test_a_run_page_shows_each_call_with_its_status(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    s = login(server)
    ok, refused = f"ok-{uuid.uuid4().hex[:6]}", f"no-{uuid.uuid4().hex[:6]}"
    dest.plan(refused, 503)
    for rid, status in ((ok, 200), (refused, 502)):
        resp = requests.post(server.url + "/u/lookup", json={"id": rid}, headers={"X-Request-Id": rid}, timeout=10)
        assert resp.status_code == status, resp.text

    def run_page(rid):
        found = re.findall(r'href="/_hookline/ui/runs/([0-9a-f]+)"',
                           s.get(server.url + UI + "/search", params={"q": rid}, timeout=10).text)
        return s.get(server.url + UI + f"/runs/{found[0]}", timeout=10).text if found else ""
    wait_until(lambda: run_page(refused), 10, "both runs recorded")
    call = f"<td>ask</td><td><code>POST {dest.url}/recv</code></td><td>{{}}</td>"
    assert call.format(200) in run_page(ok), run_page(ok)
    page = run_page(refused)
    assert call.format(503) in page, page
    assert '<dt>Status</dt><dd class="bad">502</dd>' in page and "step &#39;ask&#39;: destination answered 503" in page


def test_no_request_to_the_ui_gets_a_500_or_a_trace(dest, servers, sqlite_store):
    """Random requests, mostly to the real pages with a valid session, with random query
    parameters, form fields, paths and cookies: an answer of the UI's, never a failure."""
    server = ui_server(servers, dest, sqlite_store)
    good = login(server).cookies["hookline_ui"]
    text = st.sampled_from(["dead", "yes", "/ui/dlq", "<script>", "0" * 70, "\x00", "%ff"]) | st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
    routes = [("GET", p.partition("?")[0]) for p in GET_PAGES] + [("POST", p) for p in POSTS] + [
        ("POST", "/login"), ("GET", "/login"), ("GET", "/static/ui.css")]
    # (no "." or ".." segment: the client resolves it, and the request would leave the UI)
    segment = text.filter(lambda s: s not in (".", "..")).map(lambda s: quote(s, safe=""))
    elsewhere = st.tuples(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"]),
                          st.lists(segment, max_size=4).map(lambda parts: "/" + "/".join(parts)))

    @HTTP_PROPERTY_SETTINGS
    @given(route=st.sampled_from(routes) | st.sampled_from(routes) | elsewhere,
           query=st.dictionaries(st.sampled_from(["q", "state", "next", "done", "n"]), text, max_size=3),
           form=st.dictionaries(st.sampled_from(["csrf", "token", "next", "confirm"]) | text, text, max_size=3),
           cookie=st.just(good) | st.just(good) | st.sampled_from([None, good[:-1], "2|1:0|"]) | text)
    def check(route, query, form, cookie):
        method, path = route
        headers = {} if cookie is None else {"Cookie": "hookline_ui=" + quote(cookie, safe="|:=")}
        resp = requests.request(method, server.url + UI + path, params=query, data=form, headers=headers,
                                allow_redirects=False, timeout=10)
        assert resp.status_code in (200, 303, 400, 401, 403, 404, 405, 409), (resp.status_code, resp.text[:300])
        assert "Traceback" not in resp.text and "Something failed" not in resp.text, resp.text[:300]
        if resp.status_code != 303:
            assert resp.headers["Content-Type"] in (HTML, "text/css; charset=utf-8"), resp.headers
    check()
    assert "admin ui:" not in "".join(line for line in server.lines if "ERROR" in line), server.log()


def test_a_jobs_stored_context_is_shown_with_credentials_redacted(dest, servers, sqlite_store):
    server = ui_server(servers, dest, sqlite_store)
    rid, secret = f"relay-{uuid.uuid4().hex[:6]}", "sender-credential-" + uuid.uuid4().hex
    dest.plan(rid, 400)
    resp = requests.post(server.url + "/u/relay", json={"id": rid}, headers={"X-Sender-Token": secret}, timeout=10)
    assert resp.status_code == 202, resp.text
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    wait_until(lambda: requests.get(server.url + ADMIN[0] + "/dlq", headers=bearer, timeout=10).json(), 15, "dead")
    (job,) = requests.get(server.url + ADMIN[0] + "/dlq", headers=bearer, timeout=10).json()
    stored = requests.get(server.url + ADMIN[0] + f"/deliveries/{job['id']}", headers=bearer, timeout=10).json()
    assert secret in json.dumps(stored["payload"]), stored     # it is in the store: the branch sends it on
    page = login(server).get(server.url + UI + f"/deliveries/{job['id']}", timeout=10).text
    assert secret not in page, page
    assert "&#34;x-sender-token&#34;: &#34;[redacted]&#34;" in page, page
    assert "&#34;token&#34;: &#34;[redacted]&#34;" in page, page        # copied by a step: masked too


def test_while_the_store_is_down_the_pages_say_so(dest, servers, redis_server):
    server = ui_server(servers, dest, redis_server.url)
    s = login(server)
    csrf = csrf_of(s.get(server.url + UI + "/dlq", timeout=10))
    redis_server.kill()
    for method, page in [("GET", "/"), ("GET", "/dlq"), ("GET", "/search?q=x"), ("GET", "/runs/abc"),
                         ("GET", "/pipelines/ui-orders"), ("POST", "/dlq/replay")]:
        resp = s.request(method, server.url + UI + page, data={"csrf": csrf}, allow_redirects=False, timeout=30)
        assert resp.status_code == 503 and resp.headers["Content-Type"] == HTML, (page, resp.status_code)
        assert "The store cannot be reached; retry later." in resp.text and not LEAKS.search(resp.text), resp.text
    redis_server.start()
    wait_until(lambda: s.get(server.url + UI + "/dlq", timeout=30).status_code == 200, 30, "the store back")


def test_a_pipeline_file_gone_since_the_start_is_said_so(dest, servers, sqlite_store, tmp_path):
    shutil.copytree(UI_PIPELINES, tmp_path / "ui")
    server = ui_server(servers, dest, sqlite_store, paths=[tmp_path / "ui"])
    (tmp_path / "ui" / "legacy.yaml").unlink()
    page = login(server).get(server.url + UI + "/pipelines/ui-legacy", timeout=10)
    assert page.status_code == 200 and "<b>error</b> <code>unreadable</code> No such file or directory" in page.text
