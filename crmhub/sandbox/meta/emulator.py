"""MetaEmulator: the Graph API endpoints of the Messenger Platform crmhub uses; see docs/sandbox/meta.md.

Glue between the shared plumbing and the Meta parts: the version in the
path (`/v21.0/...`), Page access tokens (`access_token` parameter or
`Authorization: Bearer`), the Pages business-use-case rate limit with its
`X-Business-Use-Case-Usage` header (and `X-App-Usage`), Graph's error body
`{"error": {message, type, code, error_subcode, fbtrace_id}}`, webhooks and
the seed actions tests, the demo and `crmhub sandbox inbound` use.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import ControlAction, Emulator, Fault, Route, SandboxClock, json_response
from crmhub.sandbox.meta import graph, models
from crmhub.sandbox.meta.models import GraphError, MetaBackend, aware, graph_time
from crmhub.sandbox.meta.webhooks import MetaWebhooks

VERSION = re.compile(r"v\d{1,2}\.\d")
HOUR = 3600.0
PAGE = "crmhub.meta.page"  # the page the request's token speaks for
CONVERSATION_FIELDS = ("id", "updated_time", "participants", "messages", "message_count", "link")
MESSAGE_FIELDS = ("id", "created_time", "from", "to", "message", "attachments")
PROFILE_FIELDS = ("id", "name", "first_name", "last_name", "username", "profile_pic")


class MetaEmulator(Emulator):
    """The Meta Graph API emulator (Messenger and Instagram messaging). Seed it with the methods below."""

    name: ClassVar[str] = "meta"
    dated: ClassVar[bool] = True  # the Send API's windows are Meta's clock against Meta's timestamps

    def __init__(self, *, clock: SandboxClock | None = None, state_file: str | Path | None = None) -> None:
        self.webhooks = MetaWebhooks(self)
        self.backend = MetaBackend(self, on_event=self.webhooks.notify)
        super().__init__(clock=clock, state_file=state_file)

    # ---- plumbing hooks ----------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return models.initial_state()

    def routes(self) -> Iterable[Route]:
        return [
            Route(("GET",), "/<version>/<page_id>/conversations", self._graph(self._conversations)),
            Route(("POST",), "/<version>/<page_id>/messages", self._graph(self._send)),
            Route(("GET",), "/<version>/<node_id>/messages", self._graph(self._messages_edge)),
            Route(("GET",), "/<version>/<node_id>", self._graph(self._node)),
            Route(("GET",), "/<version>/", self._graph(self._nodes)),
        ]

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """Version, then the Page token, then the page's hourly business-use-case allowance."""
        try:
            version = request.path.split("/")[1]
            if not VERSION.fullmatch(version):
                raise GraphError(f"Unknown path components: /{version}", 2500)
            token = _token(request)
            if not token:
                raise GraphError("An active access token must be used to query information about the current "
                                 "user.", 2500)
            if token not in self.state["tokens"]:
                raise GraphError("Invalid OAuth access token - Cannot parse access token", 190)
            page_id = self.backend.token_page(token)
            if page_id is None:
                raise GraphError("Error validating access token: Session has expired.", 190, subcode=463)
            request.environ[PAGE] = page_id
            self._count(page_id)
            if self.take_fault("daily_limit", request) is not None or self._usage(page_id) > 100:
                raise self._throttled(page_id, HOUR)
        except GraphError as exc:
            return _error(exc)
        return None

    def on_token_expiry(self) -> None:
        self.backend.revoke_all_tokens()

    def not_emulated_response(self, request: Request) -> Response:
        return _error(GraphError(f"Unknown path components: {request.path} (the crmhub sandbox does not emulate "
                                 f"{request.method} {request.path})", 2500))

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        return _error(self._throttled(models.DEFAULT_PAGE_ID, fault.retry_after))

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        return _error(GraphError("An unexpected error has occurred. Please retry your request later.", 2,
                                 status=fault.status))

    def decorate(self, request: Request, response: Response) -> Response:
        """The usage headers on every answer to a caller whose page is known (`Date` is in sandbox time: `dated`)."""
        page_id = request.environ.get(PAGE)
        if page_id is not None and "X-Business-Use-Case-Usage" not in response.headers:
            with self.lock:
                usage = min(100, self._usage(page_id))
                app = self._app_usage()
            response.headers["X-Business-Use-Case-Usage"] = json.dumps(
                {page_id: [_buc(usage, 0)]}, separators=(",", ":"))
            response.headers["X-App-Usage"] = json.dumps(
                {"call_count": app, "total_cputime": app, "total_time": app}, separators=(",", ":"))
        return response

    def reset(self) -> None:
        self.webhooks.discard_pending()
        super().reset()

    # ---- rate limits ------------------------------------------------------------------
    def _count(self, page_id: str) -> None:
        calls: list[list[Any]] = self.state["usage"]["calls"]
        now = self.clock.time()
        calls[:] = [c for c in calls if c[1] > now - HOUR]
        calls.append([page_id, now])

    def _usage(self, page_id: str) -> int:
        """The page's share of its hourly allowance used, in percent (Meta reports 0-100)."""
        now = self.clock.time()
        used = sum(1 for c in self.state["usage"]["calls"] if c[0] == page_id and c[1] > now - HOUR)
        return math.ceil(used * 100 / max(1, int(self.state["usage"]["page_calls_per_hour"])))

    def _app_usage(self) -> int:
        now = self.clock.time()
        used = sum(1 for c in self.state["usage"]["calls"] if c[1] > now - HOUR)
        return min(100, math.ceil(used * 100 / (200 * max(1, int(self.state["usage"]["page_calls_per_hour"])))))

    def _throttled(self, page_id: str, seconds: float) -> GraphError:
        minutes = max(1, math.ceil(seconds / 60))
        header = json.dumps({page_id: [_buc(100, minutes)]}, separators=(",", ":"))
        return GraphError("There have been too many calls to this Page account. Wait a bit and try again. For more "
                          "info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
                          80001, headers={"X-Business-Use-Case-Usage": header})

    # ---- handlers ---------------------------------------------------------------------
    def _graph(self, handler: Any) -> Any:
        def guarded(request: Request, **args: Any) -> Response:
            try:
                args.pop("version", None)
                return json_response(handler(request, **args))
            except GraphError as exc:
                return _error(exc)

        guarded.__name__ = handler.__name__
        return guarded

    def _own_page(self, request: Request, page_id: str) -> str:
        """The token's page; `me` means it; another page's id is refused as Graph does."""
        mine = str(request.environ[PAGE])
        if page_id not in ("me", mine):
            self.backend.page(page_id)  # unknown: 100/33
            raise GraphError("(#200) The page access token does not have access to this page", 200,
                             kind="OAuthException")
        return mine

    def _conversations(self, request: Request, page_id: str) -> dict[str, Any]:
        page_id = self._own_page(request, page_id)
        platform = request.args.get("platform", "messenger")
        if platform not in models.PLATFORMS:
            raise GraphError("(#100) Param platform must be one of {MESSENGER, INSTAGRAM}", 100)
        specs = graph.parse_fields(request.args.get("fields")) or {"id": graph.FieldSpec("id"),
                                                                   "updated_time": graph.FieldSpec("updated_time")}
        graph.check_known(specs, CONVERSATION_FIELDS, "Conversation")
        items = self.backend.conversations(page_id, platform, request.args.get("user_id"))
        limit = _int(request.args.get("limit"))
        return graph.page(items, lambda c: self._render_conversation(request, c, specs), limit=limit,
                          after=request.args.get("after"), before=request.args.get("before"),
                          next_url=graph.next_link(request.host_url.rstrip("/"), request.path,
                                                   dict(request.args), limit))

    def _render_conversation(self, request: Request, record: dict[str, Any],
                             specs: dict[str, graph.FieldSpec]) -> dict[str, Any]:
        page_id, platform = record["page_id"], record["platform"]
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            if name == "updated_time":
                out[name] = graph_time(record["updated_time"])
            elif name == "message_count":
                out[name] = len(record["messages"])
            elif name == "link":
                out[name] = f"/{page_id}/inbox/{record['id']}"
            elif name == "participants":
                ours = self.backend.our_id(page_id, platform)
                out[name] = {"data": [self.backend.participant(page_id, platform, record["user_id"]),
                                      self.backend.participant(page_id, platform, ours)]}
            elif name == "messages":
                out[name] = self._message_page(request, record, spec.fields, spec.limit, nested=True)
        out["id"] = record["id"]
        return out

    def _message_page(self, request: Request, record: dict[str, Any], specs: dict[str, graph.FieldSpec],
                      limit: int | None, *, nested: bool) -> dict[str, Any]:
        specs = specs or {"id": graph.FieldSpec("id"), "created_time": graph.FieldSpec("created_time")}
        graph.check_known(specs, MESSAGE_FIELDS, "Message")
        args = {} if nested else dict(request.args)
        return graph.page(self.backend.messages_of(record), lambda m: self._render_message(m, specs), limit=limit,
                          after=None if nested else request.args.get("after"),
                          before=None if nested else request.args.get("before"),
                          next_url=graph.next_link(request.host_url.rstrip("/"),
                                                   f"/{models.GRAPH_VERSION}/{record['id']}/messages",
                                                   {**args, "fields": _fields_text(specs),
                                                    "access_token": _token(request)}, limit))

    def _render_message(self, message: dict[str, Any], specs: dict[str, graph.FieldSpec]) -> dict[str, Any]:
        page_id, platform = message["page_id"], message["platform"]
        out: dict[str, Any] = {"id": message["id"]}
        for name in specs:
            if name == "created_time":
                out[name] = graph_time(message["created_time"])
            elif name == "from":
                out[name] = self.backend.participant(page_id, platform, message["from"])
            elif name == "to":
                out[name] = {"data": [self.backend.participant(page_id, platform, message["to"])]}
            elif name == "message":
                out[name] = message["text"]
            elif name == "attachments" and message["attachments"]:
                out[name] = {"data": [_attachment(message["id"], i, a) for i, a in enumerate(message["attachments"])]}
        return out

    def _messages_edge(self, request: Request, node_id: str) -> dict[str, Any]:
        record = self._conversation(request, node_id)
        return self._message_page(request, record, graph.parse_fields(request.args.get("fields")),
                                  _int(request.args.get("limit")), nested=False)

    def _conversation(self, request: Request, node_id: str) -> dict[str, Any]:
        record = self.state["conversations"].get(node_id)
        if record is None or record["page_id"] != request.environ[PAGE]:
            raise _no_object(node_id)
        return dict(record)

    def _node(self, request: Request, node_id: str) -> dict[str, Any]:
        """A conversation, a message, a person's profile (User Profile API) or the page itself."""
        specs = graph.parse_fields(request.args.get("fields"))
        page_id = str(request.environ[PAGE])
        if node_id in self.state["conversations"]:
            graph.check_known(specs, CONVERSATION_FIELDS, "Conversation")
            return self._render_conversation(request, self._conversation(request, node_id),
                                             specs or {"id": graph.FieldSpec("id")})
        message = self.state["messages"].get(node_id)
        if message is not None and message["page_id"] == page_id:
            graph.check_known(specs, MESSAGE_FIELDS, "Message")
            return self._render_message(message, specs or {"created_time": graph.FieldSpec("created_time")})
        person = self.state["people"].get(node_id)
        if person is not None and person["page_id"] == page_id:
            graph.check_known(specs, PROFILE_FIELDS, "User")
            return _profile(person, specs or {"name": graph.FieldSpec("name")})
        if node_id in ("me", page_id):
            page = self.backend.page(page_id)
            return {"name": page["name"], "id": page_id}
        raise _no_object(node_id)

    def _nodes(self, request: Request) -> dict[str, Any]:
        """`GET /?ids=a,b&fields=...`: several nodes in one call, keyed by id (Graph's multiple-ID read)."""
        ids = [i for i in (request.args.get("ids") or "").split(",") if i]
        if not ids:
            raise GraphError("(#100) Missing parameter: ids", 100)
        if len(ids) > 50:
            raise GraphError("(#100) Too many IDs. Maximum: 50.", 100)
        return {node_id: self._node(request, node_id) for node_id in ids}

    def _send(self, request: Request, page_id: str) -> dict[str, Any]:
        page_id = self._own_page(request, page_id)
        sent = self.backend.send(page_id, _send_body(request))
        return {"recipient_id": sent["to"], "message_id": sent["id"]}

    # ---- seed API ----------------------------------------------------------------------
    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/inbound`, `people`, `webhook` and `limits` (docs/sandbox/meta.md)."""
        return {
            "inbound": self._inbound_action,
            "people": lambda body: {"id": self.add_person(str(body["platform"]), body.get("name"))},
            "webhook": lambda body: {"verified": self.subscribe(
                str(body["url"]), str(body.get("verify_token", models.DEFAULT_VERIFY_TOKEN)),
                list(body.get("fields", ["messages", "message_echoes"])))},
            "limits": lambda body: self.set_page_limit(int(body["page_calls_per_hour"])),
        }

    def _inbound_action(self, body: dict[str, Any]) -> dict[str, Any]:
        platform = str(body["platform"])
        sender = str(body["from"]).strip()
        with self.lock:
            known = self.state["people"].get(sender) or next(
                (p for p in self.state["people"].values() if p["name"] == sender and p["platform"] == platform), None)
        user_id = known["id"] if known else self.add_person(platform, sender)
        record = self.inbound(platform, user_id, str(body.get("text") or ""), body.get("attachments"))
        return {"id": record["id"], "from": user_id, "conversation_id": record["conversation_id"]}

    def add_person(self, platform: str, name: str | None = None, user_id: str | None = None) -> str:
        """A person who can write to the page on `platform`; returns their scoped id (PSID or IGSID)."""
        with self.lock:
            made = self.backend.person(platform, user_id, name)
            self.persist()
            return made

    def inbound(self, platform: str, user_id: str, text: str, attachments: list[dict[str, Any]] | None = None,
                at: datetime | None = None) -> dict[str, Any]:
        """The person writes to the page (Messenger) or its Instagram account; returns the message record."""
        with self.lock:
            record = self.backend.inbound(platform, user_id, text, attachments, at=aware(at) if at else None)
            self.persist()
            return dict(record)

    def subscribe(self, url: str, verify_token: str = models.DEFAULT_VERIFY_TOKEN,
                  fields: list[str] | None = None) -> bool:
        """Subscribe the app's webhook (verification request first); True when it was verified."""
        return self.webhooks.subscribe(url, verify_token, fields or ["messages", "message_echoes"])

    def set_page_limit(self, calls_per_hour: int) -> dict[str, Any]:
        """The page's business-use-case allowance, in calls per rolling hour."""
        if calls_per_hour < 1:
            raise ValueError("page_calls_per_hour must be at least 1")
        with self.lock:
            self.state["usage"]["page_calls_per_hour"] = calls_per_hour
            self.persist()
        return {"page_calls_per_hour": calls_per_hour}

    def messages(self, conversation_of: str | None = None) -> list[dict[str, Any]]:
        """Every message (of the person `conversation_of` when given), oldest first."""
        records = self.snapshot()["messages"].values()
        chosen = [m for m in records if conversation_of is None or conversation_of in (m["from"], m["to"])]
        return sorted(chosen, key=lambda m: m["created_time"])

    def wait_for_deliveries(self, timeout: float = 5.0) -> bool:
        return self.webhooks.wait_idle(timeout)

    def webhook_attempts(self) -> list[dict[str, Any]]:
        attempts: list[dict[str, Any]] = self.snapshot()["webhook_attempts"]
        return attempts


def _error(exc: GraphError) -> Response:
    response = json_response(exc.body(), exc.status, exc.headers)
    response.headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "{_www_kind(exc.code)}" "{exc.message[:80]}"'
    return response


def _www_kind(code: int) -> str:
    return "invalid_token" if code == 190 else "invalid_request"


def _buc(usage: int, minutes: int) -> dict[str, Any]:
    return {"type": "pages", "call_count": usage, "total_cputime": max(0, usage // 2),
            "total_time": max(0, usage // 2), "estimated_time_to_regain_access": minutes}


def _no_object(node_id: str) -> GraphError:
    return GraphError(f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be loaded due "
                      "to missing permissions, or does not support this operation.", 100, subcode=33,
                      kind="GraphMethodException")


def _token(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    for scheme in ("Bearer ", "OAuth "):
        if header.startswith(scheme):
            return header[len(scheme):].strip()
    return str(request.args.get("access_token") or request.form.get("access_token") or "")


def _send_body(request: Request) -> dict[str, Any]:
    """The Send API's parameters: a JSON body, or form fields whose objects are JSON strings."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise GraphError("(#100) The request body is not valid JSON", 100)
        return body
    out: dict[str, Any] = {}
    for key, value in request.form.items():
        try:
            out[key] = json.loads(value) if key in ("recipient", "message") else value
        except ValueError:
            raise GraphError(f"(#100) param {key} must be JSON", 100) from None
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        raise GraphError("(#100) Param limit must be an integer", 100) from None


def _fields_text(specs: dict[str, graph.FieldSpec]) -> str:
    return ",".join(specs)


def _attachment(mid: str, index: int, attachment: dict[str, Any]) -> dict[str, Any]:
    """A Graph message attachment: image_data for images, file_url for the rest."""
    url = attachment.get("payload", {}).get("url", "")
    kind = attachment.get("type", "file")
    name = url.rsplit("/", 1)[-1] or f"{kind}-{index}"
    out: dict[str, Any] = {"id": f"{mid[-12:]}{index}", "mime_type": _MIME.get(kind, "application/octet-stream"),
                           "name": name, "size": 1024}
    if kind == "image":
        out["image_data"] = {"url": url, "preview_url": url, "width": 640, "height": 480}
    elif kind == "video":
        out["video_data"] = {"url": url, "preview_url": url, "width": 640, "height": 480}
    else:
        out["file_url"] = url
    return out


_MIME = {"image": "image/jpeg", "video": "video/mp4", "audio": "audio/mpeg", "file": "application/pdf"}


def _profile(person: dict[str, Any], specs: dict[str, graph.FieldSpec]) -> dict[str, Any]:
    first, _, last = str(person["name"]).partition(" ")
    values = {"name": person["name"], "first_name": first, "last_name": last,
              "username": str(person["name"]).lower().replace(" ", "_"),
              "profile_pic": f"https://platform-lookaside.fbsbx.com/platform/profilepic/?psid={person['id']}"}
    out = {name: values[name] for name in specs if name in values}
    out["id"] = person["id"]
    return out
