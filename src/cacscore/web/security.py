"""Request guard of the review app: Host names, same-origin proof, access token, security headers.

Every request passes :func:`guard` (an HTTP middleware, see :func:`cacscore.web.main.create_app`):

- **Host** must be a loopback name or one allowed with ``--allowed-host``; a
  page on a DNS-rebound name (``attacker.example`` resolving to 127.0.0.1)
  therefore reads nothing.
- **API requests from another site** are refused: ``Sec-Fetch-Site`` must be
  ``same-origin`` or ``none`` when the browser sends it.
- **State-changing API requests** (POST, PUT, PATCH, DELETE) must carry the
  custom header ``X-Cacscore-Request``. A cross-site form or a ``no-cors``
  fetch cannot set a custom header, and a CORS request that does is never
  allowed (this server answers no preflight). An ``Origin`` header, when
  present, must name this server.
- **Access token** (when one is set): ``Authorization: Bearer``, ``X-Cacscore-Token``
  or the session cookie. Opening ``/?token=TOKEN`` exchanges the token for an
  HttpOnly, SameSite=Strict cookie and redirects to ``/``, so the token leaves
  the address bar. Wrong tokens are logged (client address only) and answered
  ever more slowly.
- Every response carries :data:`SECURITY_HEADERS`; an unexpected error is a
  500 that carries them too (and is logged).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from cacscore.errors import InvalidInputError

if TYPE_CHECKING:
    from cacscore.web.dependencies import Settings

log = logging.getLogger("cacscore.web")

#: Sent with every response: the page may load nothing from elsewhere, never be framed, never leak its
#: address as a referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: Header the review page sends with every request; cross-site forms and no-cors fetches cannot send it.
REQUEST_HEADER = "X-Cacscore-Request"
#: Cookie holding the session value derived from the access token.
SESSION_COOKIE = "cacscore_session"
#: Shortest access token accepted, characters: 32 hex digits are 128 bits.
MIN_TOKEN_CHARS = 32
#: Host names always allowed (the server is reached from this computer).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Methods that change state and therefore need the same-origin proof.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: ``Sec-Fetch-Site`` values of requests made by this server's own page or typed by the user.
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})
#: Delay after the first wrong token from an address, s; it doubles with each further one up to the cap.
FAILED_TOKEN_DELAY_S = 0.5
FAILED_TOKEN_DELAY_CAP_S = 8.0
#: An address's failures are forgotten after this long without one, s.
_FAILURE_MEMORY_S = 900.0
_MAX_TRACKED_CLIENTS = 10_000


def generate_token() -> str:
    """A fresh access token of 256 random bits (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    """Return ``token`` if it is long enough to resist guessing.

    Raises
    ------
    InvalidInputError
        If it has fewer than :data:`MIN_TOKEN_CHARS` characters.
    """
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidInputError(
            f"--token has {len(token)} characters; give at least {MIN_TOKEN_CHARS} (128 bits as hex), "
            "or --token auto to have one generated"
        )
    return token


def host_name(header: str) -> str:
    """The host name of a ``Host`` (or ``Origin`` authority) header, lower case, without port or brackets.

    Examples
    --------
    >>> host_name("[::1]:8000"), host_name("LocalHost:80"), host_name("example.org.")
    ('::1', 'localhost', 'example.org')
    """
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        name = text[1:end] if end > 0 else text
    else:
        name = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return name.rstrip(".")


def session_value(token: str) -> str:
    """The cookie value of ``token``: a keyed hash, so that the cookie never holds the token itself."""
    return hmac.new(token.encode(), b"cacscore review session", hashlib.sha256).hexdigest()


class FailedAttempts:
    """Wrong-token counts per client address, for the growing delay."""

    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay_s(self, client: str) -> float:
        """Count a failure of ``client`` and return how long to wait before answering, s."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > _MAX_TRACKED_CLIENTS:
                self._failures.clear()
            count, last = self._failures.get(client, (0, now))
            if now - last > _FAILURE_MEMORY_S:
                count = 0
            count += 1
            self._failures[client] = (count, now)
        return float(min(FAILED_TOKEN_DELAY_S * 2 ** (count - 1), FAILED_TOKEN_DELAY_CAP_S))

    def forget(self, client: str) -> None:
        """A correct token: start counting afresh."""
        with self._lock:
            self._failures.pop(client, None)


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _given_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-cacscore-token")


async def _wrong_token(request: Request, failures: FailedAttempts, what: str) -> JSONResponse:
    client = request.client.host if request.client else "unknown"
    delay = failures.delay_s(client)
    log.warning("wrong access token (%s) from %s; answering in %.1f s", what, client, delay)
    await asyncio.sleep(delay)
    return _refuse(401, "wrong access token")


def _same_origin_problem(request: Request) -> str | None:
    """Why an API request is not provably from this server's own page (None: it is)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in _SAME_ORIGIN_FETCH:
        return f"request from another site (Sec-Fetch-Site: {fetch_site}) refused"
    if request.method not in UNSAFE_METHODS:
        return None
    if not request.headers.get(REQUEST_HEADER.lower()):
        return f"state-changing request without the {REQUEST_HEADER} header refused"
    origin = request.headers.get("origin")
    if origin is not None:
        authority = origin.split("://", 1)[-1]
        if authority.lower() != request.headers.get("host", "").lower():
            return f"request from origin {origin[:100]!r} refused"
    return None


def _is_allowed_host(request: Request, settings: Settings) -> bool:
    return host_name(request.headers.get("host", "")) in settings.allowed_host_names()


async def guard(
    request: Request,
    call_next: Callable[[Request], Awaitable[Response]],
    settings: Settings,
    failures: FailedAttempts,
) -> Response:
    """Check one request (see the module docstring) and add the security headers to its answer."""
    response = await _checked(request, call_next, settings, failures)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _checked(
    request: Request,
    call_next: Callable[[Request], Awaitable[Response]],
    settings: Settings,
    failures: FailedAttempts,
) -> Response:
    if not _is_allowed_host(request, settings):
        shown = request.headers.get("host", "")[:100]
        log.warning("request for host %r refused (allowed: loopback names and --allowed-host)", shown)
        return _refuse(400, f"host {shown!r} is not served here; allow it with --allowed-host")
    path = request.url.path
    if path.startswith("/api/"):
        problem = _same_origin_problem(request)
        if problem is not None:
            log.warning("%s %s: %s", request.method, path, problem)
            return _refuse(403, problem)
        if settings.token:
            given = _given_token(request)
            cookie = request.cookies.get(SESSION_COOKIE)
            client = request.client.host if request.client else "unknown"
            if given is not None:
                if not hmac.compare_digest(given.encode(), settings.token.encode()):
                    return await _wrong_token(request, failures, "header")
            elif cookie is not None:
                if not hmac.compare_digest(cookie.encode(), session_value(settings.token).encode()):
                    return await _wrong_token(request, failures, "cookie")
            else:
                return _refuse(401, "missing access token: open the address with ?token=... once")
            failures.forget(client)
    elif request.method == "GET" and path in ("/", "/index.html") and "token" in request.query_params:
        return await _exchange_token(request, settings, failures)
    try:
        return await call_next(request)
    except Exception:
        # Without this the answer would leave without the security headers (and with Starlette's text).
        log.exception("%s %s failed", request.method, path)
        return _refuse(500, "internal error; see the server log")


async def _exchange_token(request: Request, settings: Settings, failures: FailedAttempts) -> Response:
    """``/?token=TOKEN``: set the session cookie and send the browser to ``/`` without the token."""
    redirect = RedirectResponse("/", status_code=303)
    if not settings.token:
        return redirect
    given = request.query_params.get("token", "")
    if not hmac.compare_digest(given.encode(), settings.token.encode()):
        return await _wrong_token(request, failures, "address")
    if request.client:
        failures.forget(request.client.host)
    redirect.set_cookie(
        SESSION_COOKIE,
        session_value(settings.token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return redirect
