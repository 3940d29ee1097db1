"""A hub on the three CRM emulators and Twilio, with the agents' API on and each CRM app's signing secret."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from ruamel.yaml import YAML

from crmhub.agent_api.signing import canvas_signed_request, hubspot_signature
from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
CUSTOMER = "+14155550123"
STRANGER = "+14155550124"
OPS_TOKEN = "ops-token-for-tests-0123456789"
HUBSPOT_SECRET = "hubspot-app-secret"
CANVAS_SECRET = "canvas-consumer-secret"
ORG_ID = "00D000000000001EAA"
INSTALLATION = 4242
PUBLIC_URL = "https://hooks.example.test"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Panel:
    """The hub, the webhook app (with /agent mounted) as a test client, the emulators and the apps' secrets."""

    hub: Hub
    client: TestClient
    sf: Any
    zd: Any
    hs: Any
    tw: Any
    zendesk_key: rsa.RSAPrivateKey

    # ---- how each CRM signs ---------------------------------------------------------------
    def zendesk_token(self, *, key: rsa.RSAPrivateKey | None = None, subdomain: str = "sandbox",
                      installation: int = INSTALLATION, expires_in: float = 300, sub: str = "361") -> str:
        now = datetime.now(UTC)
        claims = {"iss": f"{subdomain}.zendesk.com", "aud": f"https://{subdomain}.zendesk.com/api/v2/apps/"
                  f"installations/{installation}.json", "iat": int(now.timestamp()),
                  "exp": int((now + timedelta(seconds=expires_in)).timestamp()), "sub": sub,
                  "context": {"product": "support", "location": "ticket_sidebar"}}
        return jwt.encode(claims, key or self.zendesk_key, algorithm="RS256")

    @staticmethod
    def canvas(*, secret: str = CANVAS_SECRET, org: str = ORG_ID, issued: datetime | None = None,
               record: str | None = None) -> str:
        at = issued or datetime.now(UTC)
        return canvas_signed_request(secret, {
            "algorithm": "HMACSHA256", "issuedAt": int(at.timestamp() * 1000), "userId": "005000000000001AAA",
            "client": {"instanceUrl": "https://acme.my.salesforce.com", "oauthToken": "not-used"},
            "context": {"user": {"userId": "005000000000001AAA", "userName": "alice@acme.test"},
                        "organization": {"organizationId": org},
                        "environment": {"parameters": {"recordId": record} if record else {}}}})

    def hubspot_headers(self, method: str, path_and_query: str, body: bytes = b"", *, secret: str = HUBSPOT_SECRET,
                        age: timedelta = timedelta()) -> dict[str, str]:
        stamp = str(int((datetime.now(UTC) - age).timestamp() * 1000))
        return {"X-HubSpot-Signature-v3": hubspot_signature(secret, method, PUBLIC_URL + path_and_query, body, stamp),
                "X-HubSpot-Request-Timestamp": stamp}

    def session(self, crm: str = "zendesk") -> dict[str, str]:
        form = {"token": self.zendesk_token()} if crm == "zendesk" else {"signed_request": self.canvas()}
        answer = self.client.post(f"/agent/session/{crm}", data=form)
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['session']}"}

    @staticmethod
    def ops() -> dict[str, str]:
        return {"Authorization": f"Bearer {OPS_TOKEN}"}


def _settings(tmp_path: Path, urls: dict[str, str], zendesk_pem: bytes, frame_ancestors: list[str]) -> Path:
    path = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "hubspot", "twilio"),
                                  webhooks_port=18080)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("zendesk.pem", zendesk_pem), ("ops", OPS_TOKEN.encode()),
                        ("hubspot", HUBSPOT_SECRET.encode()), ("canvas", CANVAS_SECRET.encode())):
        (secrets / name).write_bytes(value)
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["retry"].update({"initial_wait": "10ms", "max_wait": "50ms", "max_total": "10s"})
    settings["webhooks"]["public_url"] = PUBLIC_URL
    settings["agent_api"] = {
        "enabled": True, "token": f"file:{secrets / 'ops'}",
        "zendesk": {"public_key": f"file:{secrets / 'zendesk.pem'}", "installation_id": INSTALLATION},
        "hubspot": {"client_secret": f"file:{secrets / 'hubspot'}"},
        "salesforce": {"consumer_secret": f"file:{secrets / 'canvas'}", "organization_id": ORG_ID},
        "frame_ancestors": frame_ancestors,
    }
    with path.open("w") as out:
        yaml.dump(settings, out)
    return path


@pytest.fixture
def panel(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
          twilio_sandbox: EmulatorServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Panel]:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    tw.add_number(OURS)
    key = rsa_key()
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url,
            "twilio": twilio_sandbox.url}
    marker = request.node.get_closest_marker("frame_ancestors")  # a browser test's host page frames the plugin
    ancestors = list(marker.args) if marker else []
    with build_hub(load_config(_settings(tmp_path, urls, public_pem(key), ancestors))) as hub:
        zendesk = hub.crms["zendesk"]
        zendesk.job_poll_first = 0.01  # type: ignore[union-attr]  # the emulator's jobs finish at once
        with TestClient(hub.webhook_app(), base_url=PUBLIC_URL) as client:
            yield Panel(hub, client, sf, zd, hs, tw, key)
