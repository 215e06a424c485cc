"""The web dashboard: its pages, and the browser sessions that may use the control API.

A browser cannot open a Unix socket and must not hold the TCP listener's bearer token, so it
gets a session instead. Contract:

* ``POST /api/dashboard/login`` (a socket or bearer caller; not a browser session) answers
  ``{"token", "expires_in", "path"}``: a one-time login token bound to that caller.
* ``GET /dashboard/login?token=...`` through the bridge (``heliosctl dashboard``, which sends
  :data:`BRIDGE_HEADER`) or the TCP listener exchanges it, once, for a session: cookie
  ``heliosd_session_<instance>`` (HttpOnly, SameSite=Strict, Path=/) and
  ``heliosd_csrf_<instance>`` (readable by the page, which echoes it in ``X-CSRF-Token``),
  then redirects to ``/dashboard/``. ``<instance>`` is random per daemon process, and the
  page is told it (``<meta name="heliosd-instance">``): cookies are scoped by host, not by
  port, so two ``heliosd@`` instances' dashboards on 127.0.0.1 would otherwise overwrite
  each other's session, and logging in to one would log the other out.
* A browser request is served only with a live session cookie; a state-changing one (any
  method but GET/HEAD) also needs ``X-CSRF-Token`` equal to the session's CSRF value and, when
  the browser sends ``Origin``, an Origin naming the same host: else 403. Its Actor is
  ``"dashboard session <id> via <user>"`` with the issuer's uid, so the audit says who.

Sessions live in memory only: a daemon restart ends them (run ``heliosctl dashboard`` again).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from heliosd.control.app import ACTOR_KEY, Handler, actor_of, json_error, json_response
from heliosd.control.backend import Actor

BRIDGE_HEADER: Final = "X-Heliosd-Bridge"
SESSION_COOKIE: Final = "heliosd_session"  # the cookies' names begin so: + "_<instance>"
CSRF_COOKIE: Final = "heliosd_csrf"
INSTANCE_META: Final = b'<meta name="heliosd-instance" content="">'
CSRF_HEADER: Final = "X-CSRF-Token"
LOGIN_TTL_S: Final = 300.0
SESSION_TTL_S: Final = 12 * 3600.0
SAFE_METHODS: Final = frozenset(("GET", "HEAD"))

# Every asset the page loads, with its content type; nothing else under web/ is served.
ASSETS: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}


@dataclass(slots=True)
class _Login:
    issuer: Actor
    expires: float


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    secret: str
    csrf: str
    actor: Actor
    expires: float


class DashboardSessions:
    """One-time login tokens and the sessions they became (in memory, monotonic clock)."""

    def __init__(self, *, login_ttl_s: float = LOGIN_TTL_S, session_ttl_s: float = SESSION_TTL_S):
        self.login_ttl_s = login_ttl_s
        self.session_ttl_s = session_ttl_s
        self.instance = secrets.token_hex(4)  # in the cookies' names (see the module)
        self.session_cookie = f"{SESSION_COOKIE}_{self.instance}"
        self.csrf_cookie = f"{CSRF_COOKIE}_{self.instance}"
        self._logins: dict[str, _Login] = {}
        self._sessions: dict[str, Session] = {}

    def _prune(self, now: float) -> None:
        self._logins = {t: v for t, v in self._logins.items() if v.expires > now}
        self._sessions = {s: v for s, v in self._sessions.items() if v.expires > now}

    def issue_login(self, issuer: Actor) -> str:
        now = time.monotonic()
        self._prune(now)
        token = secrets.token_urlsafe(32)
        self._logins[token] = _Login(issuer, now + self.login_ttl_s)
        return token

    def exchange(self, token: str) -> Session | None:
        """The login token becomes a session, once; None when unknown, used or expired."""
        now = time.monotonic()
        self._prune(now)
        login = self._logins.pop(token, None)
        if login is None:
            return None
        sid = secrets.token_hex(4)
        while any(s.id == sid for s in self._sessions.values()):
            sid = secrets.token_hex(4)
        issuer = login.issuer
        actor = Actor(issuer.uid, f"dashboard session {sid} via {issuer.user}", "dashboard")
        session = Session(
            sid,
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            actor,
            now + self.session_ttl_s,
        )
        self._sessions[session.secret] = session
        return session

    def lookup(self, secret: str | None) -> Session | None:
        if not secret:
            return None
        now = time.monotonic()
        session = self._sessions.get(secret)
        if session is None or session.expires <= now:
            return None
        return session


SESSIONS_KEY: Final = web.AppKey("heliosd_dashboard_sessions", DashboardSessions)


# --------------------------------------------------------------------------- the gate


def is_browser_request(request: web.Request, *, tcp: bool) -> bool:
    """Through the bridge (it always sends the header), or on TCP without a bearer token."""
    if BRIDGE_HEADER in request.headers:
        return True
    return tcp and "Authorization" not in request.headers


def _origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


def _refused_page(status: int, message: str) -> web.Response:
    text = (
        "<!doctype html><meta charset=utf-8><title>heliosd dashboard</title>"
        f"<p>{message}</p><p>Run <code>heliosctl dashboard</code> and open the URL it prints.</p>"
    )
    return web.Response(status=status, text=text, content_type="text/html")


async def browser_gate(
    request: web.Request, handler: Handler, sessions: DashboardSessions
) -> web.StreamResponse:
    """Serve a browser request only with a session (and CSRF for a change); see the module."""
    if request.path == "/dashboard/login":
        return _login(request, sessions)
    session = sessions.lookup(request.cookies.get(sessions.session_cookie))
    if session is None:
        if request.path.startswith("/dashboard"):
            return _refused_page(401, "No dashboard session (or it expired).")
        return json_error(401, "unauthorized", "a dashboard session is required")
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), session.csrf.encode()):
            return json_error(403, "forbidden", f"missing or wrong {CSRF_HEADER} header")
        if not _origin_ok(request):
            return json_error(403, "forbidden", "cross-origin request refused")
    if request.path == "/api/dashboard/login":
        return json_error(403, "forbidden", "a dashboard session cannot issue logins")
    request[ACTOR_KEY] = session.actor
    return await handler(request)


def _login(request: web.Request, sessions: DashboardSessions) -> web.StreamResponse:
    if request.method != "GET":
        return json_error(405, "method_not_allowed", "use GET /dashboard/login?token=...")
    session = sessions.exchange(request.query.get("token", ""))
    if session is None:
        return _refused_page(403, "This login link is unknown, already used or expired.")
    resp = web.Response(status=303, headers={"Location": "/dashboard/"})
    resp.set_cookie(
        sessions.session_cookie, session.secret, path="/", httponly=True, samesite="Strict",
        max_age=int(sessions.session_ttl_s),
    )  # fmt: skip
    # Readable by the page on purpose: it is sent back as X-CSRF-Token (double submit),
    # which a cross-site page can neither read nor forge.
    resp.set_cookie(
        sessions.csrf_cookie, session.csrf, path="/", samesite="Strict",
        max_age=int(sessions.session_ttl_s),
    )  # fmt: skip
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


# --------------------------------------------------------------------------- routes


def _asset(name: str) -> bytes:
    return resources.files("heliosd.control").joinpath("web", name).read_bytes()


_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Same origin only: the page loads nothing from anywhere else, nor may anything inject it.
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


async def _index(request: web.Request) -> web.Response:
    instance = request.app[SESSIONS_KEY].instance.encode()
    filled = INSTANCE_META.replace(b'content=""', b'content="%s"' % instance)
    body = _asset("index.html").replace(INSTANCE_META, filled)
    return web.Response(body=body, content_type="text/html", headers=_HEADERS)


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = ASSETS.get(name)
    if kind is None or name == "index.html":
        return json_error(404, "not_found", f"no such asset: {name}")
    return web.Response(body=_asset(name), content_type=kind, headers=_HEADERS)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard/")


async def _issue(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS_KEY]
    actor = actor_of(request)
    token = sessions.issue_login(actor)
    return json_response(
        {"token": token, "expires_in": int(sessions.login_ttl_s), "path": "/dashboard/login"}
    )


def install(app: web.Application, sessions: DashboardSessions | None = None) -> DashboardSessions:
    """Add the dashboard's pages and login route to a control app (after build_app).

    They are not API operations (HTML, not JSON), so the OpenAPI document leaves them out."""
    sessions = sessions or DashboardSessions()
    app[SESSIONS_KEY] = sessions
    app.router.add_get("/dashboard", _redirect, allow_head=False)
    app.router.add_get("/dashboard/", _index, allow_head=False)
    app.router.add_get("/dashboard/static/{name}", _static, allow_head=False)
    # Handled by browser_gate before routing; registered so it is not a 404 elsewhere.
    app.router.add_get("/dashboard/login", _redirect, allow_head=False)
    app.router.add_post("/api/dashboard/login", _issue)
    return sessions
