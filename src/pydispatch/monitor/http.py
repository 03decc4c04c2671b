"""The dispatcher's HTTP endpoint: ``/metrics``, a JSON API and the dashboard.

Served by the standard library's WSGI server (``wsgiref``) with a thread per request, in a
thread of the dispatcher process, as ``prometheus_client.start_http_server`` serves its
metrics: the dispatcher's loop is a ZeroMQ poll loop, not an event loop an ASGI server could
share, and its clients are a Prometheus scraping every few seconds and a dashboard polling
every second, so a threaded WSGI server is enough and costs the dispatcher no dependency and
no start-up time; ``/metrics`` is ``prometheus_client``'s own WSGI app. Requests never read
the dispatcher's state: they get a :class:`~.view.DispatcherView` from its loop (see
:mod:`.exchange`), and ask dataflow job masters for job figures themselves.

A dispatcher with keys asks every request for an admin's bearer token
(``security.admin_http_token``, printed by ``pydispatch keys token DIR NAME``): in an
``Authorization: Bearer`` header (Prometheus's ``authorization`` scrape setting, scripts), or
for a browser once as ``?token=`` in the address, which sets an HttpOnly cookie the dashboard's
requests then carry; so protected, it may serve beyond loopback. Without keys there is no
credential to ask for: :func:`check_http_address` refuses an address beyond loopback unless
told it is meant (``insecure``).
"""

from __future__ import annotations

import contextlib
import errno
import http.cookies
import ipaddress
import json
import logging
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, Final, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import msgspec
from prometheus_client import make_wsgi_app

from .collector import JobFigures, make_registry
from .view import DispatcherView

__all__ = [
    "DEFAULT_HTTP",
    "HttpEndpointError",
    "MonitorServer",
    "check_http_address",
    "parse_http_address",
]

log = logging.getLogger(__name__)

#: Where ``pydispatch dispatcher`` serves its dashboard unless told otherwise (Dask's port).
DEFAULT_HTTP: Final = "127.0.0.1:8787"
_STATIC: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_VIEW_TIMEOUT: Final = 5.0  # seconds a request waits for the dispatcher's loop

App = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


class HttpEndpointError(OSError):
    """The endpoint cannot serve where asked: refused beyond loopback, or the port is taken."""


def parse_http_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; port 0: any free one) -> ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not an HTTP address: write HOST:PORT, e.g. {DEFAULT_HTTP}")
    return host, int(port)


def check_http_address(host: str, insecure: bool, protected: bool = False) -> None:
    """Refuse to serve the monitor beyond this machine unless ``protected`` (it asks for an
    admin's token) or ``insecure``: it shows every worker, task count and job."""
    if insecure or protected or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a host name: it may resolve anywhere
    if not loopback:
        raise HttpEndpointError(
            f"refusing to serve the dashboard and metrics on {host}, beyond loopback, with no "
            "credential to protect them: run the dispatcher with --keys (it then asks for an "
            "admin's token: pydispatch keys token), or use --http 127.0.0.1:PORT (and an SSH "
            "tunnel), or --http-insecure if this network is trusted"
        )


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client must not keep the dispatcher from exiting


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


class MonitorServer:
    """The endpoint, serving in a daemon thread from construction until :meth:`close`."""

    def __init__(
        self,
        address: str,
        view: Callable[[float], DispatcherView],
        *,
        insecure: bool = False,
        fallback: bool = False,
        tokens: Callable[[str], str | None] | None = None,
    ) -> None:
        """``fallback``: if the port is taken, serve on a free one (said in the log), as
        Dask's scheduler does when its default 8787 is taken by another cluster. ``tokens``:
        every request must carry a token it accepts (``security.AdminTokens.check``)."""
        host, port = parse_http_address(address)
        check_http_address(host, insecure, protected=tokens is not None)
        self._view = view
        self._tokens = tokens
        self._jobs = JobFigures()
        registry = make_registry(lambda: view(_VIEW_TIMEOUT), self._jobs)
        self._metrics_app = make_wsgi_app(registry)
        server_class = _Server6 if ":" in host else _Server
        try:
            try:
                self._server = make_server(
                    host, port, self._app, server_class=server_class, handler_class=_QuietHandler
                )
            except OSError as error:
                if not (fallback and error.errno == errno.EADDRINUSE):
                    raise
                self._server = make_server(
                    host, 0, self._app, server_class=server_class, handler_class=_QuietHandler
                )
                log.warning(
                    "port %d is taken (another cluster?): serving HTTP on port %d instead",
                    port,
                    self._server.server_address[1],
                )
        except OSError as error:
            self._jobs.close()
            raise HttpEndpointError(
                f"cannot serve HTTP on {address}: {error.strerror or error}"
            ) from None
        bound_port = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pydispatch-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._jobs.close()

    # ------------------------------------------------------------------------ routes

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._tokens is not None:
            token, from_query = _presented_token(environ)
            if not token or self._tokens(token) is None:
                return _json(
                    start_response,
                    {"error": "an admin's bearer token is required (pydispatch keys token)"},
                    "401 Unauthorized",
                    [("WWW-Authenticate", 'Bearer realm="pydispatch"')],
                )
            if from_query:  # a browser's first visit: later requests carry the cookie
                start_response = _with_cookie(start_response, token)
        return self._route(environ, start_response)

    def _route(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "/") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _json(start_response, {"error": "only GET is served"}, "405 Method Not Allowed")
        try:
            if path == "/metrics":
                answer: Iterable[bytes] = self._metrics_app(environ, start_response)
                return answer
            if path.startswith("/api/"):
                return self._api(path[len("/api/") :].rstrip("/"), start_response)
            if path in ("/", "/index.html"):
                return _static("index.html", start_response)
            if path.startswith("/static/") and path[len("/static/") :] in _STATIC:
                return _static(path[len("/static/") :], start_response)
        except TimeoutError:
            return _json(
                start_response,
                {"error": "the dispatcher's loop did not answer in time"},
                "503 Service Unavailable",
            )
        return _json(start_response, {"error": f"nothing at {path}"}, "404 Not Found")

    def _api(self, route: str, start_response: StartResponse) -> Iterable[bytes]:
        view = self._view(_VIEW_TIMEOUT)
        if route == "workers":
            return _json(start_response, [workers_entry(w) for w in view.workers])
        if route == "tasks":
            return _json(start_response, tasks_entry(view))
        if route == "overview":
            return _json(start_response, overview_entry(view))
        if route == "jobs":
            return _json(start_response, _jobs(view))
        if route.startswith("jobs/"):
            job_id = route[len("jobs/") :]
            found = [j for j in _jobs(view) if j["job_id"] == job_id]
            if not found:
                return _json(start_response, {"error": f"no job {job_id!r}"}, "404 Not Found")
            return _json(start_response, self._job_detail(found[0]))
        return _json(start_response, {"error": f"no API route {route!r}"}, "404 Not Found")

    def _job_detail(self, job: dict[str, Any]) -> dict[str, Any]:
        detail = dict(job)
        reply = self._jobs.ask(job["endpoint"]) if job["endpoint"] else None
        if reply is None:
            detail["metrics"] = None
            detail["error"] = "its master did not answer (the job ended, or its master is busy)"
            return detail
        metrics = dict(reply.metrics)
        detail["state"] = reply.state
        detail["graph"] = metrics.pop("graph", None)
        detail["placement"] = metrics.pop("placement", None)
        detail["metrics"] = metrics
        return detail


def _jobs(view: DispatcherView) -> list[dict[str, Any]]:
    fields = ("job_id", "name", "state", "endpoint", "attempt", "slices")
    return [{f: getattr(j, f) for f in fields} for j in view.jobs]


def workers_entry(w: Any) -> dict[str, Any]:
    entry: dict[str, Any] = msgspec.to_builtins(w.worker)
    entry["cpu_seconds"] = w.cpu_seconds
    entry["rss_bytes"] = w.rss_bytes
    return entry


def tasks_entry(view: DispatcherView) -> dict[str, Any]:
    entry: dict[str, Any] = msgspec.to_builtins(view.tasks)
    r = view.recorder
    entry["submitted_by_priority"] = {str(k): v for k, v in r.submitted_by_priority.items()}
    entry["by_client"] = msgspec.to_builtins(view.clients)
    entry["placed"] = r.placed
    entry["placed_by_solver"] = view.solver.placed_by_solver
    entry["queue_wait"] = msgspec.to_builtins(r.queue_wait)
    entry["run_time"] = msgspec.to_builtins(r.run_time)
    return entry


def overview_entry(view: DispatcherView) -> dict[str, Any]:
    workers = [w.worker for w in view.workers]
    return {
        "endpoint": view.endpoint,
        "uptime": view.uptime,
        "workers": len(workers),
        "slots": sum(w.slots for w in workers),
        "slots_busy": sum(w.slots_used for w in workers),
        "tasks": msgspec.to_builtins(view.tasks),
        "clients": msgspec.to_builtins(view.clients),
        "jobs": len(view.jobs),
    }


def _json(
    start_response: StartResponse,
    body: Any,
    status: str = "200 OK",
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *(extra or ()),
        ],
    )
    return [data]


_COOKIE: Final = "pydispatch_token"


def _presented_token(environ: WSGIEnvironment) -> tuple[str, bool]:
    """The token a request carries (Authorization: Bearer, else the cookie, else ?token=), and
    whether it came in the query string."""
    scheme, _, credential = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip(), False
    cookies = http.cookies.SimpleCookie()
    with contextlib.suppress(http.cookies.CookieError):
        cookies.load(str(environ.get("HTTP_COOKIE", "")))
    if _COOKIE in cookies:
        return cookies[_COOKIE].value, False
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
    if query.get("token"):
        return query["token"][0], True
    return "", False


def _with_cookie(start_response: StartResponse, token: str) -> StartResponse:
    cookie = f"{_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"

    def respond(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
        return start_response(status, [*headers, ("Set-Cookie", cookie)], *rest)

    return cast(StartResponse, respond)


def _static(name: str, start_response: StartResponse) -> list[bytes]:
    data = resources.files("pydispatch.monitor").joinpath("static", name).read_bytes()
    start_response("200 OK", [("Content-Type", _STATIC[name]), ("Content-Length", str(len(data)))])
    return [data]
