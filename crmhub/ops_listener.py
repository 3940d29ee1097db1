"""The ops listener: `/metrics` and `/healthz` on their own address (settings `ops`), never the webhook port.

The webhook port must be reachable by Twilio and X, so usually by anyone;
metrics and the readiness report are for the operators' Prometheus and
probes. So they are served apart, on 127.0.0.1 by default, and, when
`ops.token` is set, only to requests carrying `Authorization: Bearer <token>`
(compared in constant time; anything else gets 401). The listener runs
whether webhooks are enabled or not.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

log = structlog.get_logger("crmhub.ops_listener")

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
"""Returns (ready, report): /healthz answers the report, with 503 when not ready."""


def create_ops_app(registry: CollectorRegistry, health: HealthFn, *, token: str | None = None) -> FastAPI:
    """The ops app.

    Args:
        registry: what `GET /metrics` exposes (Prometheus text format).
        health: the readiness report `GET /healthz` answers, 200 when ready, 503 when not.
        token: when set, every request needs `Authorization: Bearer <token>`.
    """
    guard = [Depends(_bearer(token))] if token else []
    app = FastAPI(title="crmhub ops", docs_url=None, redoc_url=None, openapi_url=None, dependencies=guard)
    app.add_api_route("/healthz", _health_route(health), methods=["GET"])
    app.add_api_route("/metrics", _metrics_route(registry), methods=["GET"])
    return app


def _bearer(token: str) -> Callable[[Request], None]:
    expected = token.encode()

    def authorised(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
            log.warning("ops request refused", path=request.url.path, authorization="missing" if not scheme else "bad")
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    return authorised


def _health_route(health: HealthFn) -> Callable[[], Any]:
    async def healthz() -> JSONResponse:
        try:
            ready, report = await run_in_threadpool(health)
        except Exception as exc:  # noqa: BLE001  # a probe answers, whatever broke
            log.error("health check failed", error=type(exc).__name__)
            ready, report = False, {"status": "unavailable", "checks": {}}
        return JSONResponse(report, status_code=200 if ready else 503)

    return healthz


def _metrics_route(registry: CollectorRegistry) -> Callable[[], Any]:
    async def metrics() -> Response:
        body = await run_in_threadpool(generate_latest, registry)  # the store's gauges query the database
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
