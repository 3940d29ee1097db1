"""The Meta Graph emulator's backend: pages, people, conversations and messages, no HTTP.

State is plain JSON in `emulator.state`; every time comes from the sandbox
clock. One Facebook Page, optionally linked to one Instagram professional
account, talks with people known only by their scoped ids: a page-scoped id
(PSID) on Messenger, an Instagram-scoped id (IGSID) on Instagram. A
conversation is the one thread between the page (or IG account) and one
person; each message belongs to one conversation.

The messaging windows are Meta's: the page may answer freely within 24 hours
of the person's last message (`RESPONSE`, `UPDATE`), with the `HUMAN_AGENT`
tag (`MESSAGE_TAG`) within 7 days, and not at all after that (code 10,
subcode 2018278). Reference: developers.facebook.com/docs/messenger-platform/
send-messages (messaging types, message tags) and .../policy/policy-overview.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from crmhub.sandbox._hosted import HostedBackend

GRAPH_VERSION = "v21.0"
DEFAULT_PAGE_ID = "104000000000001"
DEFAULT_PAGE_NAME = "crmhub support"
DEFAULT_IG_ID = "17841400000000001"
DEFAULT_IG_USERNAME = "crmhub_support"
DEFAULT_PAGE_TOKEN = "sandbox-page-token"
DEFAULT_APP_ID = "900000000000001"
DEFAULT_APP_SECRET = "sandbox-app-secret"
DEFAULT_VERIFY_TOKEN = "sandbox-verify-token"

STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
TAGS = ("HUMAN_AGENT", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE")
PLATFORMS = ("messenger", "instagram")
TEXT_LIMIT = 2000  # Messenger: text must be UTF-8 and under 2000 characters
ATTACHMENT_TYPES = ("image", "video", "audio", "file")


class GraphError(Exception):
    """A Graph API error answer: HTTP status and the `error` object's fields."""

    def __init__(self, message: str, code: int, *, status: int = 400, subcode: int | None = None,
                 kind: str = "OAuthException", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.subcode = subcode
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """`{"error": {message, type, code, error_subcode, fbtrace_id}}` as Graph sends it."""
        error: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = secrets.token_urlsafe(8)
        return {"error": error}


def graph_time(epoch: float) -> str:
    """Graph's timestamp format: ISO 8601 with a +0000 offset, e.g. 2026-01-05T08:00:00+0000."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def initial_state() -> dict[str, Any]:
    """One page with its linked Instagram account, its page token, one app; no people yet."""
    return {
        "app": {"id": DEFAULT_APP_ID, "secret": DEFAULT_APP_SECRET},
        "pages": {DEFAULT_PAGE_ID: {"id": DEFAULT_PAGE_ID, "name": DEFAULT_PAGE_NAME,
                                    "instagram_id": DEFAULT_IG_ID, "instagram_username": DEFAULT_IG_USERNAME}},
        "tokens": {DEFAULT_PAGE_TOKEN: {"page_id": DEFAULT_PAGE_ID, "revoked": False}},
        "people": {},  # scoped id -> {id, platform, page_id, name}
        "conversations": {},  # id -> {id, platform, page_id, user_id, updated_time, messages: [mid, ...]}
        "messages": {},  # mid -> {id, conversation_id, created_time, from, to, text, attachments, is_echo}
        "webhook": None,  # {url, verify_token, verified, fields, max_attempts}
        "webhook_attempts": [],
        "usage": {"page_calls_per_hour": 4800, "calls": []},  # BUC: the page's calls in the last hour
        "sequence": 0,
    }


class MetaBackend(HostedBackend):
    """Domain operations on the emulator's state; events: 'message' or 'echo' records as created."""

    def now(self) -> float:
        return self._host.clock.time()

    def _next(self) -> int:
        self.state["sequence"] += 1
        return int(self.state["sequence"])

    # ---- pages and people -----------------------------------------------------
    def page(self, page_id: str) -> dict[str, Any]:
        found = self.state["pages"].get(page_id)
        if found is None:
            raise GraphError(f"Unsupported get request. Object with ID '{page_id}' does not exist, cannot be "
                             "loaded due to missing permissions, or does not support this operation.", 100,
                             subcode=33, kind="GraphMethodException")
        return dict(found)

    def our_id(self, page_id: str, platform: str) -> str:
        """Our side of a conversation: the page on Messenger, its Instagram account on Instagram."""
        page = self.page(page_id)
        return str(page["instagram_id"] if platform == "instagram" else page["id"])

    def person(self, platform: str, user_id: str | None = None, name: str | None = None,
               page_id: str = DEFAULT_PAGE_ID) -> str:
        """The scoped id of a person on `platform` (made up when new); returns it."""
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
        user_id = user_id or str((24_000_000_000_000_000 if platform == "messenger" else 5_000_000_000_000_000)
                                 + self._next())
        known = self.state["people"].get(user_id)
        if known is None:
            self.state["people"][user_id] = {"id": user_id, "platform": platform, "page_id": page_id,
                                             "name": name or f"Customer {user_id[-4:]}"}
        elif known["platform"] != platform:
            raise ValueError(f"{user_id} is a {known['platform']} id, not a {platform} one")
        return user_id

    def conversation_with(self, page_id: str, platform: str, user_id: str, *, create: bool) -> dict[str, Any] | None:
        for record in self.state["conversations"].values():
            if record["page_id"] == page_id and record["platform"] == platform and record["user_id"] == user_id:
                return record
        if not create:
            return None
        prefix = "t_" if platform == "messenger" else "aWdfd"
        conv_id = f"{prefix}{10_000_000_000_000 + self._next()}"
        record = {"id": conv_id, "platform": platform, "page_id": page_id, "user_id": user_id,
                  "updated_time": self.now(), "messages": []}
        self.state["conversations"][conv_id] = record
        return record

    # ---- messages ---------------------------------------------------------------
    def _store(self, conversation: dict[str, Any], sender: str, recipient: str, text: str,
               attachments: list[dict[str, Any]], *, is_echo: bool, at: float | None,
               metadata: str | None = None) -> dict[str, Any]:
        mid = f"m_{secrets.token_urlsafe(18)}"
        when = self.now() if at is None else at
        record = {"id": mid, "conversation_id": conversation["id"], "created_time": when, "from": sender,
                  "to": recipient, "text": text, "attachments": attachments, "is_echo": is_echo,
                  "platform": conversation["platform"], "page_id": conversation["page_id"]}
        if metadata is not None:
            record["metadata"] = metadata
        self.state["messages"][mid] = record
        conversation["messages"].append(mid)
        conversation["updated_time"] = max(conversation["updated_time"], when)
        self._emit("echo" if is_echo else "message", record)
        return record

    def inbound(self, platform: str, user_id: str, text: str, attachments: list[dict[str, Any]] | None = None,
                page_id: str = DEFAULT_PAGE_ID, at: float | None = None) -> dict[str, Any]:
        """A person writes to the page (or its Instagram account); returns the stored message."""
        if not text and not attachments:
            raise ValueError("a message needs text or attachments")
        for attachment in attachments or []:
            if attachment.get("type") not in ATTACHMENT_TYPES or not attachment.get("payload", {}).get("url"):
                raise ValueError(f"an attachment needs a type of {', '.join(ATTACHMENT_TYPES)} and payload.url")
        conversation = self.conversation_with(page_id, platform, user_id, create=True)
        assert conversation is not None
        return self._store(conversation, user_id, self.our_id(page_id, platform), text, list(attachments or []),
                           is_echo=False, at=at)

    def last_inbound(self, conversation: dict[str, Any]) -> float | None:
        """When the person last wrote in the conversation (opens the windows), or None."""
        times = [self.state["messages"][mid]["created_time"] for mid in conversation["messages"]
                 if not self.state["messages"][mid]["is_echo"]]
        return max(times) if times else None

    def send(self, page_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /{page-id}/messages`: checks the body and the window, stores the message, returns it."""
        page = self.page(page_id)
        recipient = body.get("recipient")
        user_id = str(recipient.get("id", "")) if isinstance(recipient, dict) else ""
        if not user_id:
            raise GraphError("(#100) The parameter recipient is required", 100)
        message = body.get("message")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            raise GraphError("(#100) The parameter message is required", 100)
        text = message.get("text") or ""
        if not isinstance(text, str) or len(text) > TEXT_LIMIT:
            raise GraphError("(#100) Length of param message[text] must be less than or equal to 2000", 100)
        person = self.state["people"].get(user_id)
        if person is None or person["page_id"] != page["id"]:
            raise GraphError("(#100) No matching user found", 100, subcode=2018001)
        messaging_type = body.get("messaging_type") or "RESPONSE"
        if messaging_type not in MESSAGING_TYPES:
            raise GraphError(f"(#100) Param messaging_type must be one of {{{', '.join(MESSAGING_TYPES)}}}", 100)
        tag = body.get("tag")
        if messaging_type == "MESSAGE_TAG" and tag not in TAGS:
            raise GraphError("(#100) Param tag must be one of {" + ", ".join(TAGS) + "}", 100)
        conversation = self.conversation_with(page["id"], person["platform"], user_id, create=False)
        last = self.last_inbound(conversation) if conversation else None
        age = None if last is None else self.now() - last
        allowed = STANDARD_WINDOW if messaging_type != "MESSAGE_TAG" or tag != "HUMAN_AGENT" else HUMAN_AGENT_WINDOW
        if age is None or age > allowed.total_seconds():
            raise GraphError("(#10) This message is sent outside of allowed window. Learn more about the new "
                             "policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview",
                             10, subcode=2018278)
        assert conversation is not None
        attachment = message.get("attachment")
        attachments = [attachment] if isinstance(attachment, dict) else []
        metadata = message.get("metadata") if isinstance(message.get("metadata"), str) else None
        record = self._store(conversation, self.our_id(page["id"], person["platform"]), user_id, text, attachments,
                             is_echo=True, at=None, metadata=metadata)
        record["messaging_type"], record["tag"] = messaging_type, tag  # for tests; Graph does not show them
        return record

    # ---- reads --------------------------------------------------------------------
    def conversations(self, page_id: str, platform: str, user_id: str | None = None) -> list[dict[str, Any]]:
        """The page's conversations on `platform`, most recently updated first."""
        found = [c for c in self.state["conversations"].values()
                 if c["page_id"] == page_id and c["platform"] == platform
                 and (user_id is None or c["user_id"] == user_id)]
        return sorted(found, key=lambda c: (-c["updated_time"], c["id"]))

    def messages_of(self, conversation: dict[str, Any]) -> list[dict[str, Any]]:
        """A conversation's messages, newest first (as Graph lists them)."""
        records = [self.state["messages"][mid] for mid in conversation["messages"]]
        return sorted(records, key=lambda m: -m["created_time"])

    def participant(self, page_id: str, platform: str, scoped_id: str) -> dict[str, Any]:
        """A `from` / `to` entry: {id, name} on Messenger, {id, username} on Instagram."""
        if scoped_id == self.our_id(page_id, platform):
            page = self.state["pages"][page_id]
            return ({"username": page["instagram_username"], "id": scoped_id} if platform == "instagram"
                    else {"name": page["name"], "email": f"{page_id}@facebook.com", "id": scoped_id})
        person = self.state["people"].get(scoped_id, {"name": ""})
        if platform == "instagram":
            return {"username": str(person["name"]).lower().replace(" ", "_"), "id": scoped_id}
        return {"name": person["name"], "email": f"{scoped_id}@facebook.com", "id": scoped_id}

    # ---- tokens ---------------------------------------------------------------------
    def token_page(self, token: str) -> str | None:
        found = self.state["tokens"].get(token)
        return None if found is None or found["revoked"] else str(found["page_id"])

    def revoke_all_tokens(self) -> None:
        for token in self.state["tokens"].values():
            token["revoked"] = True


def aware(when: datetime) -> float:
    """Epoch seconds of an aware datetime (naive ones are taken as UTC)."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
