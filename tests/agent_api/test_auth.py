"""Only requests signed the way each CRM signs its apps' requests, a session from such a launch, or the ops token
reach the agents' API: nothing gets 401, anything wrongly signed gets 403."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.agent_api.conftest import Panel, rsa_key

PERSONS = "/agent/api/v1/persons/1"


def _customer(panel: Panel) -> None:
    panel.tw.receive_message("+14155550123", "+14155550100", "Where is my parcel?")
    panel.hub.sync_once()


def test_no_credentials_get_401_and_a_wrong_token_403(panel: Panel) -> None:
    _customer(panel)
    assert panel.client.get(PERSONS).status_code == 401
    assert panel.client.get(PERSONS, headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
    assert panel.client.get(PERSONS, headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    assert panel.client.get(PERSONS, headers=panel.ops()).status_code == 200


def test_a_zendesk_launch_opens_a_session_only_when_signed_by_our_app_for_our_account(panel: Panel) -> None:
    _customer(panel)
    good = panel.client.post("/agent/session/zendesk", data={"token": panel.zendesk_token()})
    assert good.status_code == 200 and good.json()["agent"] == {"crm": "zendesk", "user": "361", "name": ""}
    session = {"Authorization": f"Bearer {good.json()['session']}"}
    assert panel.client.get(PERSONS, headers=session).status_code == 200

    refused = {
        "another app's key": panel.zendesk_token(key=rsa_key()),
        "another account": panel.zendesk_token(subdomain="evil"),
        "another installation": panel.zendesk_token(installation=1),
        "expired": panel.zendesk_token(expires_in=-120),
        "not a JWT": "eyJhbGciOiJub25lIn0.e30.",
    }
    for why, token in refused.items():
        answer = panel.client.post("/agent/session/zendesk", data={"token": token})
        assert answer.status_code == 403, why
        assert token not in answer.text
    assert panel.client.post("/agent/session/zendesk", data={}).status_code == 401
    forged = good.json()["session"][:-4] + ("AAAA" if not good.json()["session"].endswith("AAAA") else "BBBB")
    assert panel.client.get(PERSONS, headers={"Authorization": f"Bearer {forged}"}).status_code == 403


def test_a_salesforce_canvas_request_opens_a_session_only_with_our_secret_and_org(panel: Panel) -> None:
    _customer(panel)
    good = panel.client.post("/agent/session/salesforce", data={"signed_request": panel.canvas()})
    assert good.status_code == 200 and good.json()["agent"]["user"] == "005000000000001AAA"
    assert panel.client.get(PERSONS, headers={"Authorization": f"Bearer {good.json()['session']}"}).status_code == 200
    for why, signed in {"another secret": panel.canvas(secret="guessed"),
                        "another org": panel.canvas(org="00D000000000002EAA"),
                        "old": panel.canvas(issued=datetime.now(UTC) - timedelta(hours=2)),
                        "garbage": "x.y"}.items():
        assert panel.client.post("/agent/session/salesforce", data={"signed_request": signed}).status_code == 403, why


def test_a_hubspot_card_request_needs_a_fresh_v3_signature_over_exactly_that_request(panel: Panel) -> None:
    _customer(panel)
    path = f"{PERSONS}?userId=77&userEmail=alice%40acme.test&portalId=123"
    assert panel.client.get(path, headers=panel.hubspot_headers("GET", path)).status_code == 200
    refused = {
        "another secret": panel.hubspot_headers("GET", path, secret="guessed"),
        "another URL": panel.hubspot_headers("GET", f"{PERSONS}?userId=78"),
        "stale": panel.hubspot_headers("GET", path, age=timedelta(minutes=6)),
        "another method": panel.hubspot_headers("POST", path),
    }
    for why, headers in refused.items():
        assert panel.client.get(path, headers=headers).status_code == 403, why
    body = b'{"conversation": "x", "text": "hi"}'
    signed = panel.hubspot_headers("POST", "/agent/api/v1/persons/1/replies", body)
    tampered = panel.client.post("/agent/api/v1/persons/1/replies", content=b'{"conversation": "x", "text": "ho"}',
                                 headers={**signed, "Idempotency-Key": "k-12345678",
                                          "Content-Type": "application/json"})
    assert tampered.status_code == 403


def test_the_openapi_document_lists_every_route(panel: Panel) -> None:
    document = panel.client.get("/agent/openapi.json").json()
    assert {"/session/{crm}", "/api/v1/records/{crm}/{record_id}", "/api/v1/persons/{person_id}/timeline",
            "/api/v1/persons/{person_id}/suggestions", "/api/v1/suggestions/{suggestion_id}/confirm",
            "/api/v1/persons/{person_id}/replies"} <= set(document["paths"])
