"""Shared plumbing of the sandbox emulators (one place, used by all of them).

Each emulated API is an `Emulator` subclass with three layers, as in moto:
state and domain operations on `self.state` (plain JSON-able dicts, so it can
be dumped, persisted and inspected), handlers that parse a request and answer
in the vendor's exact shape, and a route table (`routes()`) from method and
path to handler. This module adds what every emulator needs the same way:

* a real threaded HTTP server on 127.0.0.1 (port 0 by default, so tests never
  collide with a running `crmhub sandbox`);
* control endpoints under `/_sandbox/`: `GET state`, `POST reset`,
  `GET calls`, `GET|POST|DELETE faults`, `GET|POST clock`, `GET routes`,
  plus each API's own seed actions (`control_actions`: `POST numbers`,
  `POST mentions`...), so a sandbox in another process can be played over HTTP;
* a per-endpoint call counter, counting each request the way the vendor
  bills it (`billable()` decides, e.g. OAuth token calls are free), plus the
  sandbox time of each counted call (`call_times`, `busiest`), so a test can
  check a client's pace in any window;
* fault injection: 429 with Retry-After, 5xx, connection reset (before the
  request is handled, or after it with `after=True`: done, answer lost), slow answers,
  token expiry, daily-limit exhaustion and partial batch failure, each
  limited to a path pattern, a number of requests or a span of sandbox time;
* a shared `SandboxClock` that tests advance to simulate hours in a second;
* an explicit "not emulated" answer naming method and path for anything the
  route table lacks, never a silent 200 or a bare 404.
"""

from __future__ import annotations

import bisect
import copy
import json
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

CONTROL_PREFIX = "/_sandbox/"

FaultKind = Literal[
    "rate_limit",  # vendor-shaped 429 with Retry-After / rate-limit headers
    "server_error",  # 5xx (status), vendor-shaped body
    "reset",  # TCP connection reset: before the request is handled, or (after=True) once it is, the answer lost
    "slow",  # answer after `delay` seconds
    "expire_token",  # every issued token becomes invalid (emulator hook)
    "daily_limit",  # the daily allowance is used up (emulator decides the shape)
    "partial_failure",  # the records at `reject` of the next batch are refused
    "odd_answer",  # a 200 in a shape the client does not expect (emulator decides; Salesforce's logins)
]
GENERIC_FAULTS: tuple[FaultKind, ...] = ("rate_limit", "server_error", "reset", "slow", "expire_token")
CALL_LOG_SIZE = 100_000  # call times kept per emulator (a long demo run forgets the oldest)


class SandboxClock:
    """Wall-clock time plus an offset that tests move forward.

    One clock is shared by all emulators of a sandbox, so simulated hours pass
    for every API at once.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch, in sandbox time."""
        with self._lock:
            return time.time() + self._offset

    def now(self) -> datetime:
        """Aware UTC datetime, in sandbox time."""
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward (never backwards)."""
        if seconds < 0:
            raise ValueError("the sandbox clock never goes backwards")
        with self._lock:
            self._offset += seconds


@dataclass
class Fault:
    """One injected misbehaviour. Matches requests by method and path regex.

    `times` is how many matching requests it affects (None: all until cleared
    or until `until`, a sandbox-clock timestamp); `skip` lets that many
    matching requests through first.
    """

    kind: FaultKind
    path: str = ""
    method: str = ""
    times: int | None = 1
    skip: int = 0
    until: float | None = None
    status: int = 503
    retry_after: float = 1.0
    delay: float = 0.0
    reject: list[int] = field(default_factory=list)
    after: bool = False  # reset: drop the connection after the request took effect (a write whose answer is lost)
    hits: int = 0

    def matches(self, method: str, path: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or re.search(self.path, path) is not None


class FaultPlan:
    """The faults armed on one emulator; thread-safe."""

    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._faults: list[Fault] = []
        self._skipped: Counter[int] = Counter()
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._skipped.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, kind: FaultKind | Iterable[FaultKind], method: str, path: str) -> Fault | None:
        """Consume one hit of the first armed fault of `kind` matching the request."""
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        now = self._clock.time()
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or not fault.matches(method, path, now):
                    continue
                if self._skipped[id(fault)] < fault.skip:
                    self._skipped[id(fault)] += 1
                    continue
                fault.hits += 1
                return fault
        return None


Handler = Callable[..., Response]
ControlAction = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """One emulated endpoint: methods, a werkzeug path rule, the handler.

    The handler is called as handler(request, **path_args) and returns a
    werkzeug Response (use `json_response`).
    """

    methods: tuple[str, ...]
    rule: str
    handler: Handler
    billable: bool = True


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer; `body=None` gives an empty body (e.g. 204)."""
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    response = Response(data, status=status, headers=headers or {})
    if body is not None:
        response.headers["Content-Type"] = "application/json; charset=utf-8"
    return response


class _ConnectionReset(BaseException):
    """Raised inside a request to drop the TCP connection with a RST.

    A BaseException, so werkzeug's catch-all does not turn it into a 500; the
    request handler below catches it and resets the socket.
    """


class Emulator:
    """Base class of one emulated API. Subclasses supply the vendor parts.

    Subclasses must set `name` and implement `initial_state`, `routes` and
    the vendor-shaped error answers (`not_emulated_response`,
    `rate_limited_response`, `server_error_response`); they usually override
    `authenticate` and `on_token_expiry`.
    """

    name: ClassVar[str] = "emulator"
    dated: ClassVar[bool] = False
    """True: the `Date` header of every answer is in sandbox time (a client measuring against the vendor's clock)."""
    listeners: ClassVar[tuple[str, ...]] = ()
    """Other protocols it serves beside HTTP (the mail emulator's "smtp", "imap"), each on a port of its own."""

    def __init__(self, *, clock: SandboxClock | None = None, state_file: str | Path | None = None) -> None:
        self.clock = clock or SandboxClock()
        self.faults = FaultPlan(self.clock)
        self.calls: Counter[str] = Counter()
        self.call_times: deque[float] = deque(maxlen=CALL_LOG_SIZE)
        """Sandbox time of each counted call, oldest first (the last CALL_LOG_SIZE)."""
        self.call_log: deque[tuple[float, str]] = deque(maxlen=CALL_LOG_SIZE)
        """(sandbox time, `METHOD rule`) of each counted call, oldest first: calls by endpoint in a window."""
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.state: dict[str, Any] = self.initial_state()
        if self.state_file and self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())
        self._routes = list(self.routes())
        self._url_map = Map(
            [Rule(r.rule, endpoint=i, methods=list(r.methods)) for i, r in enumerate(self._routes)],
            strict_slashes=False,
        )

    # ---- to override -------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        """The state of a fresh, empty instance of the emulated service."""
        return {}

    def routes(self) -> Iterable[Route]:
        """The route table: every endpoint this emulator answers."""
        return []

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """Check credentials; return the vendor's error answer, or None if fine."""
        return None

    def on_token_expiry(self) -> None:
        """Invalidate every token issued so far (fault `expire_token`)."""

    def not_emulated_response(self, request: Request) -> Response:
        return json_response(
            {"error": "not emulated", "method": request.method, "path": request.path,
             "detail": f"the crmhub sandbox does not emulate {request.method} {request.path}"},
            status=501,
        )

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        return json_response({"error": "rate limited"}, 429, {"Retry-After": _seconds(fault.retry_after)})

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        return json_response({"error": "server error"}, fault.status)

    def extra_control(self, request: Request, what: str) -> Response | None:
        """This API's own `/_sandbox/<what>` endpoints; None lets the shared ones answer."""
        return None

    def control_actions(self) -> dict[str, ControlAction]:
        """This API's seed actions, `POST /_sandbox/<name>` with a JSON body (docs/sandbox/<api>.md).

        Each takes the body and returns what it created (answered 201); a
        KeyError, TypeError or ValueError is the caller's mistake (400).
        """
        return {}

    def start_listeners(self, ports: dict[str, int]) -> dict[str, str]:
        """Start the `listeners` on `ports` (missing: 0, any free one); returns each one's URL."""
        return {}

    def stop_listeners(self) -> None:
        """Stop what `start_listeners` started."""

    def listener_urls(self) -> dict[str, str]:
        """Where each running listener is (e.g. {"smtp": "smtp://127.0.0.1:8707"})."""
        return {}

    def decorate(self, request: Request, response: Response) -> Response:
        """Add headers the vendor sends on every answer (e.g. rate-limit info)."""
        return response

    # ---- helpers for subclasses --------------------------------------------
    def take_fault(self, kind: FaultKind, request: Request) -> Fault | None:
        """Consume an emulator-specific fault (daily_limit, partial_failure)."""
        return self.faults.take(kind, request.method, request.path)

    def reset(self) -> None:
        """Back to a fresh instance: empty state, no faults, no calls counted."""
        with self.lock:
            self.state = self.initial_state()
            self.calls.clear()
            self.call_times.clear()
            self.call_log.clear()
            self.faults.clear()
            self.persist()

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state, for inspection."""
        with self.lock:
            return copy.deepcopy(self.state)

    def route_table(self) -> list[dict[str, Any]]:
        """Every emulated endpoint (the source of the coverage docs)."""
        return [{"methods": sorted(set(r.methods) - {"HEAD"}), "path": r.rule, "billable": r.billable}
                for r in self._routes]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def busiest(self, seconds: float) -> int:
        """The most calls counted in any `seconds` of sandbox time (a sliding window)."""
        with self.lock:
            times = sorted(self.call_times)
        return max((bisect.bisect_right(times, t + seconds - 1e-9) - i for i, t in enumerate(times)), default=0)

    # ---- WSGI --------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self._dispatch(Request(environ))
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            index, args = adapter.match()
        except (NotFound, MethodNotAllowed):
            return self.not_emulated_response(request)
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc.get_response(request.environ)
        route = self._routes[int(index)]
        if route.billable:
            with self.lock:
                key, now = f"{request.method} {route.rule}", self.clock.time()
                self.calls[key] += 1
                self.call_times.append(now)
                self.call_log.append((now, key))
        fault = self.faults.take(GENERIC_FAULTS, request.method, request.path)
        lose_answer = False
        if fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "reset" and fault.after:
                lose_answer = True
            elif fault.kind == "reset":
                raise _ConnectionReset()
            elif fault.kind == "rate_limit":
                return self.decorate(request, self.rate_limited_response(request, fault))
            elif fault.kind == "server_error":
                return self.decorate(request, self.server_error_response(request, fault))
            elif fault.kind == "expire_token":
                with self.lock:
                    self.on_token_expiry()
        with self.lock:
            denied = self.authenticate(request, route)
            if denied is not None:
                return self.decorate(request, denied)
            response = route.handler(request, **args)
            if request.method != "GET":
                self.persist()
        if lose_answer:
            raise _ConnectionReset()  # the work is done; the client never hears of it
        return self.decorate(request, response)

    def persist(self) -> None:
        """Save the state to `state_file` (when set); seed methods call it after changing state."""
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state))
            tmp.replace(self.state_file)

    def _control(self, request: Request) -> Response:
        """The `/_sandbox/` endpoints: inspection, reset, faults, clock."""
        what = request.path[len(CONTROL_PREFIX):].strip("/")
        own = self.extra_control(request, what)
        if own is not None:
            return own
        method = request.method
        action = self.control_actions().get(what) if method == "POST" else None
        if action is not None:
            return _run_action(what, action, request)
        if what == "state" and method == "GET":
            return json_response(self.snapshot())
        if what == "reset" and method == "POST":
            self.reset()
            return json_response({"reset": self.name})
        if what == "calls" and method == "GET":
            with self.lock:
                return json_response({"total": self.total_calls, "by_endpoint": dict(self.calls)})
        if what == "calls" and method == "DELETE":
            with self.lock:
                self.calls.clear()
                self.call_times.clear()
                self.call_log.clear()
            return json_response(None, 204)
        if what == "faults":
            if method == "GET":
                return json_response(self.faults.list())
            if method == "DELETE":
                self.faults.clear()
                return json_response(None, 204)
            if method == "POST":
                try:
                    fault = self.faults.add(Fault(**(request.get_json(force=True) or {})))
                except TypeError as exc:
                    return json_response({"error": f"bad fault: {exc}"}, 400)
                return json_response(asdict(fault), 201)
        if what == "clock":
            if method == "POST":
                body = request.get_json(force=True) or {}
                self.clock.advance(float(body.get("advance", 0)))
            return json_response({"now": self.clock.now().isoformat(), "time": self.clock.time()})
        if what == "routes" and method == "GET":
            return json_response(self.route_table())
        return json_response({"error": f"unknown control endpoint {method} {request.path}"}, 404)


def _run_action(what: str, action: ControlAction, request: Request) -> Response:
    """A seed action's answer: 201 with what it made, or 400 saying what was wrong with the body."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return json_response({"error": f"POST {CONTROL_PREFIX}{what} wants a JSON object"}, 400)
    try:
        return json_response(action(body), 201)
    except KeyError as exc:  # a key of the body (a bare name), or a lookup's own sentence
        said = str(exc.args[0]) if exc.args else ""
        return json_response({"error": f"bad {what} request: {said if ' ' in said else repr(said) + ' is missing'}"},
                             400)
    except (TypeError, ValueError) as exc:
        return json_response({"error": f"bad {what} request: {exc}"}, 400)


def _seconds(value: float) -> str:
    """Retry-After wants whole seconds; never round a real wait down to 0."""
    return str(max(1, int(value + 0.999))) if value > 0 else "0"


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr, and a dropped connection is not an error."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002  # werkzeug's signature
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        """`Date` in sandbox time for an emulator that is `dated` (the vendor's clock is the sandbox's)."""
        app = getattr(self.server, "app", None)
        if timestamp is None and isinstance(app, Emulator) and app.dated:
            timestamp = app.clock.time()
        return super().date_time_string(timestamp)

    def run_wsgi(self) -> None:
        try:
            super().run_wsgi()
        except _ConnectionReset:
            # SO_LINGER 0: closing the socket now sends a TCP RST, not a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True


class EmulatorServer:
    """Serves one emulator over HTTP on a background thread, and its other `listeners` if it has any.

    Use as a context manager, or `start()` / `stop()`. `url` is the base URL;
    `listener_ports` maps a listener ("smtp") to its port (missing: 0).
    """

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0,
                 listener_ports: dict[str, int] | None = None) -> None:
        self.emulator = emulator
        self._listener_ports = dict(listener_ports or {})
        self._server: BaseWSGIServer = make_server(
            host, port, emulator, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"sandbox-{emulator.name}", daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def listener_urls(self) -> dict[str, str]:
        """Where the emulator's other protocols listen ({} for the HTTP-only ones)."""
        return self.emulator.listener_urls() if isinstance(self.emulator, Emulator) else {}

    def start(self) -> EmulatorServer:
        try:
            if isinstance(self.emulator, Emulator):  # a test may serve any WSGI app
                self.emulator.start_listeners(self._listener_ports)
        except BaseException:
            self._server.server_close()
            raise
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if isinstance(self.emulator, Emulator):
            self.emulator.stop_listeners()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
