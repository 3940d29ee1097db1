"""Webhook apps for tests that serve Twilio's and X's routes from secrets alone (no configuration, no hub).

The daemon builds its receiver from the enabled channel modules (`Hub.webhook_app`); these tests give the
channel modules' hook classes the secrets directly, the way `crmhub.channels.<name>.module` does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from crmhub.channels.contract import StatusFn
from crmhub.channels.twilio.hooks import TwilioHooks
from crmhub.channels.x.hooks import XAccountFn, XEventFn, XHooks
from crmhub.connectors.twilio_hooks import status_advances
from crmhub.webhooks import IngestFn, MessageStatuses, MetricsFn
from crmhub.webhooks import create_app as receiver


def create_app(ingest: IngestFn, *, twilio_auth_token: str | None, public_url: str | None,
               x_consumer_secret: str | None, metrics: MetricsFn | None = None, on_status: StatusFn | None = None,
               on_x_event: XEventFn | None = None, default_region: str = "US",
               clock: Callable[[], datetime] | None = None, x_account: XAccountFn | None = None) -> FastAPI:
    """The receiver with Twilio's routes (when `twilio_auth_token`) and X's (when `x_consumer_secret`)."""
    statuses = on_status if on_status is not None else MessageStatuses(advances=status_advances)
    twilio = TwilioHooks(twilio_auth_token, public_url=public_url, on_status=statuses,
                         default_region=default_region) if twilio_auth_token else None
    x = XHooks(x_consumer_secret, account=x_account, on_event=on_x_event) if x_consumer_secret else None
    app = receiver(ingest, [twilio, x], metrics=metrics, clock=clock)
    app.state.statuses = statuses
    return app
