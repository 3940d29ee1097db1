"""Logins: the OAuth 2.0 token endpoint, the SOAP login() call and the versions list.

These are the endpoints a client calls before it has a session, so they are
free (no DailyApiRequests) and unauthenticated, as on Salesforce. Both login
styles issue the same kind of session id, which REST calls then present as
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import SandboxClock, json_response
from crmhub.sandbox.salesforce.errors import oauth_error, soap_fault
from crmhub.sandbox.salesforce.models import SalesforceBackend
from crmhub.sandbox.salesforce.schema import API_PATH, API_VERSION

INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


class AuthHandlers:
    """Mixin of the login handlers; the emulator supplies `backend`, `clock` and `state`."""

    backend: SalesforceBackend
    clock: SandboxClock
    state: dict[str, Any]

    def versions(self, request: Request) -> Response:
        """GET /services/data/: the API versions this org serves (only v59.0 here)."""
        return json_response([{"label": "Winter '24", "url": API_PATH, "version": API_VERSION}])

    def oauth_token(self, request: Request) -> Response:
        """POST /services/oauth2/token: password and client_credentials grants."""
        grant = request.form.get("grant_type", "")
        if grant not in ("password", "client_credentials"):
            return oauth_error("unsupported_grant_type", "grant type not supported")
        client_id, secret = _client_credentials(request)
        client = self.backend.client(client_id)
        if client is None:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if not secrets.compare_digest(secret, client["secret"]):
            return oauth_error("invalid_client", "invalid client credentials")
        if grant == "password":
            user_id = self.backend.login(request.form.get("username", ""), request.form.get("password", ""))
            if user_id is None:
                return oauth_error("invalid_grant", "authentication failure")
        else:
            user_id = client["user_id"]
        answer = self._token_answer(request, user_id, secret)
        if grant == "client_credentials":
            answer["scope"] = "api"
        return json_response(answer)

    def soap_login(self, request: Request, version: str) -> Response:
        """POST /services/Soap/u/{version}: the partner API login() that simple-salesforce's
        username/password/security-token flow uses; a LoginResult or a LoginFault."""
        username, password = _soap_credentials(request.get_data())
        user_id = self.backend.login(username, password) if username else None
        if user_id is None:
            return soap_fault("INVALID_LOGIN", INVALID_LOGIN)
        org_id = self.state["org_id"]
        host = _instance_url(request)
        user = self.state["records"]["User"][user_id]
        values = {
            "metadataServerUrl": f"{host}/services/Soap/m/{version}/{org_id[:15]}",
            "passwordExpired": "false", "sandbox": "true",
            "serverUrl": f"{host}/services/Soap/u/{version}/{org_id[:15]}",
            "sessionId": self.backend.issue_token(user_id), "userId": user_id,
        }
        info = {"organizationId": org_id, "userEmail": user["Email"], "userFullName": user["Name"],
                "userId": user_id, "userName": user["Username"]}
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<soapenv:Body><loginResponse><result>{_xml(values)}<userInfo>{_xml(info)}</userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(body, content_type="text/xml; charset=utf-8")

    def _token_answer(self, request: Request, user_id: str, secret: str) -> dict[str, Any]:
        """Salesforce's token response; `signature` is HMAC-SHA256(id + issued_at) keyed by the secret."""
        instance = _instance_url(request)
        identity = f"{instance}/id/{self.state['org_id']}/{user_id}"
        issued_at = str(int(self.clock.time() * 1000))
        digest = hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        return {
            "access_token": self.backend.issue_token(user_id), "instance_url": instance, "id": identity,
            "token_type": "Bearer", "issued_at": issued_at, "signature": base64.b64encode(digest).decode(),
        }


def _instance_url(request: Request) -> str:
    """The emulator's own base URL: clients send their REST calls there."""
    return request.host_url.rstrip("/")


def _client_credentials(request: Request) -> tuple[str, str]:
    """client_id and client_secret from HTTP Basic (client_credentials) or the form."""
    if request.authorization is not None and request.authorization.type == "basic":
        return request.authorization.username or "", request.authorization.password or ""
    return request.form.get("client_id", ""), request.form.get("client_secret", "")


def _soap_credentials(body: bytes) -> tuple[str, str]:
    """username and password of a login() envelope, whatever its namespace prefixes."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "", ""
    found = {el.tag.rsplit("}", 1)[-1]: el.text or "" for el in root.iter() if isinstance(el.tag, str)}
    return found.get("username", ""), found.get("password", "")


def _xml(values: dict[str, str]) -> str:
    return "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items())
