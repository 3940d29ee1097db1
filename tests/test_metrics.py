"""/metrics and /healthz: exact counts after a sync against the sandbox, readiness, and the store going away."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.errors import RateLimited
from crmhub.metrics import Metrics, budget_remaining
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.x.models import DEFAULT_ACCOUNT_ID
from crmhub.scheduler import RunningJobs
from crmhub.store import open_store
from crmhub.ops_listener import create_ops_app
from crmhub.serving import HttpServer
from crmhub.webhooks import WebhookServer

OURS = "+14155550100"
WHATSAPP = "+14155550199"
START = datetime.now(UTC) - timedelta(hours=2)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> tuple[Samples, str]:
    """Every sample of /metrics by (name, sorted labels), and the content type."""
    answer = requests.get(f"{base_url}/metrics", timeout=10)
    assert answer.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, answer.headers["content-type"]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def hub(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Hub]:
    """The slice's org: two contacts and a lead in Salesforce, six inbound messages in Twilio (one of them empty)."""
    sf: Any = salesforce_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name.replace("_", " "), name)
    sf.insert("Contact", FirstName="Jane", LastName="Doe", Phone="(415) 555-0123", Tier__c="Gold")
    sf.insert("Contact", FirstName="Bob", LastName="Lee", MobilePhone="+1 415.555.0124")
    sf.insert("Lead", FirstName="Ana", LastName="Ruiz", Phone="415 555 0126", Company="Ruiz SL")
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.add_number(WHATSAPP)
    for sender, to, body, minutes in (("+14155550123", OURS, "Hi, my order hasn't arrived", 0),
                                      ("+14155550124", OURS, "I was charged twice, I need a refund", 3),
                                      ("+14155550125", OURS, "Do you ship to Canada?", 5),
                                      ("whatsapp:+14155550126", f"whatsapp:{WHATSAPP}", "Hola, ¿tienen tienda?", 8),
                                      ("+14155550123", OURS, "Any update?", 40),
                                      ("+14155550127", OURS, "", 50)):  # empty: dead-lettered at ingest
        tw.receive_message(sender, to, body, at=START + timedelta(minutes=minutes))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})
    with build_hub(load_config(settings)) as built:
        yield built


def test_metrics_after_a_sync_a_signed_webhook_and_a_forged_one(hub: Hub, twilio_sandbox: EmulatorServer) -> None:
    cycle = hub.sync_once()
    delivered = sum(d.delivered for d in cycle.deliveries)
    stored = sum(p.stored for p in cycle.polls)
    assert delivered > 0 and stored > 0
    tw: Any = twilio_sandbox.emulator
    with WebhookServer(hub.webhook_app()) as server, HttpServer(hub.ops_app(), section="ops") as ops:
        tw.add_number("+14155550101", sms_url=f"{server.url}/webhooks/twilio/messages")
        tw.receive_message("+14155550128", "+14155550101", "Sent to the webhook")
        assert tw.wait_for_webhooks(timeout=10)
        assert [h["status"] for h in tw.webhook_log()] == [200]
        forged = requests.post(f"{server.url}/webhooks/twilio/messages", timeout=10,
                               data={"MessageSid": "SM" + "0" * 32, "From": "+14155550198", "To": OURS, "Body": "x"},
                               headers={"X-Twilio-Signature": "forged"})
        assert forged.status_code == 403
        samples, content_type = scrape(ops.url)

    assert content_type.startswith("text/plain") and "version=" in content_type
    assert value(samples, "crmhub_crm_writes_total", crm="salesforce", outcome="delivered") == 5.0 == delivered
    assert value(samples, "crmhub_crm_writes_total", crm="salesforce", outcome="dead") == 0.0
    assert value(samples, "crmhub_items_ingested_total", source="twilio", path="poll", outcome="stored") == 5.0
    assert value(samples, "crmhub_items_ingested_total", source="twilio", path="webhook", outcome="stored") == 1.0
    assert value(samples, "crmhub_webhook_rejected_total", source="twilio") == 1.0
    assert value(samples, "crmhub_outbox_depth", crm="salesforce") == 0.0
    assert value(samples, "crmhub_items_ingested_total", source="twilio", path="poll", outcome="dead_lettered") == 1.0
    assert value(samples, "crmhub_dead_letters_open") == 1.0  # the empty message
    assert value(samples, "crmhub_store_up") == 1.0
    assert (value(samples, "crmhub_api_calls_total", system="salesforce", status="200") or 0) > 0
    assert (value(samples, "crmhub_api_calls_total", system="twilio", status="200") or 0) > 0
    budget = value(samples, "crmhub_api_budget_remaining", system="salesforce")
    assert budget is not None and budget > 0  # from Sforce-Limit-Info
    lag = value(samples, "crmhub_lag_seconds", source="twilio", stream="messages")
    assert lag is not None and 0 <= lag < 60  # read to its end moments ago
    assert not [labels for name, labels in samples if name == "crmhub_lag_seconds" and "loaded" in str(labels)]
    latency = value(samples, "crmhub_delivery_latency_seconds_count", crm="salesforce")
    assert latency == 5.0  # one observation per delivered item
    assert (value(samples, "crmhub_api_call_duration_seconds_count", system="salesforce") or 0) > 0
    # no bodies, numbers or secrets in any label
    text = " ".join(str(labels) for _, labels in samples)
    for secret_or_body in ("order", "Sent to the webhook", "+1415", "forged", "sandbox-secret"):
        assert secret_or_body not in text


def test_healthz_reports_store_and_per_connector_readiness(hub: Hub) -> None:
    client = TestClient(hub.ops_app())
    before = client.get("/healthz")
    assert before.status_code == 200
    assert before.json()["checks"]["connectors"]["salesforce"] == {
        "kind": "crm", "ready": False, "last_delivery_at": None, "last_error": None, "last_mirror_at": None}

    jobs = RunningJobs(hub.metrics.jobs)
    jobs.wrap("catch-up", hub.sync_once)()
    report = client.get("/healthz").json()
    assert report["status"] == "ok" and report["checks"]["store"] == {"ok": True}
    twilio, salesforce = (report["checks"]["connectors"][name] for name in ("twilio", "salesforce"))
    assert twilio["kind"] == "channel" and twilio["ready"] is True and twilio["last_poll_at"]
    assert salesforce["ready"] is True and salesforce["last_delivery_at"] and salesforce["last_mirror_at"]
    assert report["checks"]["jobs"]["catch-up"]["runs"] == 1 and report["checks"]["jobs"]["catch-up"]["failures"] == 0

    def rate_limited() -> None:
        raise RateLimited("HTTP 429: slow down for customer jane@example.com", system="salesforce", status=429)

    jobs.wrap("deliver:salesforce", rate_limited)()
    after = client.get("/healthz").json()
    salesforce = after["checks"]["connectors"]["salesforce"]
    assert salesforce["ready"] is False
    assert {k: salesforce["last_error"][k] for k in ("job", "type", "system", "status")} == {
        "job": "deliver:salesforce", "type": "RateLimited", "system": "salesforce", "status": 429}
    assert after["checks"]["connectors"]["twilio"]["ready"] is True  # a CRM failing is not the channel's problem
    assert "jane@example.com" not in client.get("/healthz").text  # error messages are not echoed
    assert hub.metrics.sample("crmhub_job_runs_total", {"job": "deliver:salesforce", "outcome": "failed"}) == 1.0
    assert hub.metrics.sample("crmhub_job_runs_total", {"job": "catch-up", "outcome": "ok"}) == 1.0


def test_healthz_is_503_and_metrics_still_answer_when_the_store_is_unreachable(tmp_path: Path) -> None:
    gone = open_store(f"sqlite:///{tmp_path}/no/such/dir/state.db", migrate_schema=False)
    metrics = Metrics(gone, crms=["salesforce"], channels=["twilio"])
    client = TestClient(create_ops_app(metrics.registry, metrics.health))
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert health.json()["checks"]["store"]["ok"] is False
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and "crmhub_store_up 0.0" in scraped.text


def test_zendesk_hubspot_and_x_calls_are_counted(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer,
                                                 hubspot_sandbox: EmulatorServer, x_sandbox: EmulatorServer,
                                                 tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    x: Any = x_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    zd.add_user(name="Jane Doe", email="jane@example.com")
    zd.clock.advance(120)
    author = x.add_user("janedoe", "Jane Doe")
    x.post_mention(author, "where is my order?")
    x.send_dm(author, DEFAULT_ACCOUNT_ID, "my order number is 1234")
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url,
            "x": x_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "hubspot", "x"))
    with build_hub(load_config(settings)) as hub:
        hub.sync_once()
        m = hub.metrics
        for system in ("salesforce", "zendesk", "hubspot", "x"):
            assert (m.sample("crmhub_api_calls_total", {"system": system, "status": "200"}) or 0) > 0, system
        assert m.sample("crmhub_items_ingested_total", {"source": "x", "path": "poll", "outcome": "stored"}) == 2.0
        for crm in ("salesforce", "zendesk", "hubspot"):
            assert m.sample("crmhub_crm_writes_total", {"crm": crm, "outcome": "delivered"}) == 2.0, crm
        assert m.sample("crmhub_api_budget_remaining", {"system": "x"}) is not None
        lag = m.sample("crmhub_lag_seconds", {"source": "x", "stream": "mentions"})  # id cursors have a lag too
        assert lag is not None and lag >= 0


def test_two_hubs_do_not_share_counts() -> None:
    one, two = Metrics(crms=["salesforce"]), Metrics(crms=["salesforce"])
    one.webhook_outcome("twilio.messages", "rejected")
    one.webhook_outcome("x.events", "stored")
    assert one.sample("crmhub_webhook_rejected_total", {"source": "twilio"}) == 1.0
    assert one.sample("crmhub_items_ingested_total", {"source": "x", "path": "webhook", "outcome": "stored"}) == 1.0
    assert two.sample("crmhub_webhook_rejected_total", {"source": "twilio"}) is None


@pytest.mark.parametrize(("system", "headers", "expected"), [
    ("salesforce", {"Sforce-Limit-Info": "api-usage=25/15000"}, 14975.0),
    ("salesforce", {"Sforce-Limit-Info": "per-app-api-usage=1/10(appName=x), api-usage=3/100"}, 97.0),
    ("salesforce", {"Sforce-Limit-Info": "api-usage=garbage"}, None),
    ("x", {"x-rate-limit-remaining": "449", "x-rate-limit-limit": "450"}, 449.0),
    ("zendesk", {"X-Rate-Limit-Remaining": "699"}, 699.0),
    ("zendesk", {"ratelimit-remaining": "12"}, 12.0),
    ("hubspot", {"X-HubSpot-RateLimit-Remaining": "99"}, 99.0),
    ("twilio", {"x-rate-limit-remaining": "5"}, None),
    ("zendesk", {}, None),
])
def test_budget_from_rate_limit_headers(system: str, headers: dict[str, str], expected: float | None) -> None:
    assert budget_remaining(system, headers) == expected


def test_a_quiet_stream_has_no_lag_and_a_stuck_one_does(salesforce_sandbox: EmulatorServer,
                                                          twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    """Lag is the time since a stream was last read to its end, not the age of its newest item."""
    twilio_sandbox.emulator.add_number(OURS)
    twilio_sandbox.emulator.receive_message("+14155550123", OURS, "hello", at=START)
    salesforce_sandbox.emulator.add_queue("Support_Queue", "Support_Queue")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})
    now = [datetime.now(UTC)]
    with build_hub(load_config(settings), clock=lambda: now[0]) as hub:
        hub.sync_once()
        now[0] += timedelta(hours=6)  # six quiet hours: nobody writes in
        hub.sync_once()
        quiet = hub.metrics.sample("crmhub_lag_seconds", {"source": "twilio", "stream": "messages"})
        assert quiet is not None and quiet < 60  # read moments ago, though its newest message is hours old
        assert hub.metrics.sample("crmhub_lag_seconds", {"source": "salesforce", "stream": "mirror.Contact"}) < 60
        now[0] += timedelta(hours=1)  # an hour in which no poll ran: that is lag
        stuck = hub.metrics.sample("crmhub_lag_seconds", {"source": "twilio", "stream": "messages"})
        assert stuck is not None and stuck >= 3600
        assert hub.metrics.sample("crmhub_lag_seconds", {"source": "salesforce", "stream": "mirror.Contact.loaded"}) is None
