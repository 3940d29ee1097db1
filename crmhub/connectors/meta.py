"""Meta: Facebook Messenger and Instagram DMs of one Page, through the Graph API, as Interactions.

No official, maintained Python SDK covers the Messenger Platform (Meta's
`facebook-python-business-sdk` is the Marketing API; `facebook-sdk` is
unmaintained since 2019), so this connector speaks Graph over `requests`,
with a session from `build_session` and every call through `Connector.call`:
the same budget, retry layer and error mapping as the SDK-based connectors
(docs/channels.md, "Messenger and Instagram").

Identities are scoped ids, which is all Meta gives: a page-scoped id (PSID,
kind `fb_psid`) on Messenger, an Instagram-scoped id (IGSID, kind `ig_sid`)
on Instagram. The same person has a different id per page and per platform,
so neither ever joins a person without other evidence.

One conversation per (platform, our account, person): the key is
`<platform>:<our id>:<their id>`, which the webhook (that carries no
conversation id) and the poll (that does) both know. The external id is the
message id (`mid`), the same both ways, so the ledger stores a message once.

Polling (reconciliation): `GET /{page-id}/conversations?platform=...` lists
conversations most recently updated first, each with its latest messages
expanded in the same call (`messages.limit(n){...}`), so a quiet poll costs
one call. The cursor is the newest `updated_time` seen (epoch seconds); a
poll re-reads `OVERLAP` before it and stops at the first conversation older
than that. A conversation with more new messages than one expansion holds is
read further on its `messages` edge.

Sending (agents' replies), within Meta's windows: up to 24 hours after the
customer's last message a `RESPONSE`; up to 7 days a `MESSAGE_TAG` with
`HUMAN_AGENT` when `human_agent` is on; after that nothing is sent and the
reply is `Rejected` with what the agent can do, which the engine writes on
the case as a note. A send has no idempotency key: after an uncertain try the
conversation is read for our message with the same text since then (see
`send`, and the limit written in docs/channels.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

import requests

from crmhub.connectors._base import Connector, classify_status, fit_text
from crmhub.connectors._http import build_session
from crmhub.connectors._retry import Retrier
from crmhub.errors import AuthError, ConnectorError, RateLimited, Rejected, Timeout
from crmhub.model import (
    Channel,
    Direction,
    Identity,
    IdentityKind,
    Interaction,
    Malformed,
    OutboundMessage,
    SentMessage,
)

SOURCE = "meta"
GRAPH_HOST = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"
PLATFORMS = {Channel.MESSENGER: "messenger", Channel.INSTAGRAM: "instagram"}
KINDS = {Channel.MESSENGER: IdentityKind.MESSENGER, Channel.INSTAGRAM: IdentityKind.INSTAGRAM}
MESSAGE_FIELDS = "id,created_time,from,to,message,attachments"
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
OVERLAP = 300.0  # seconds re-read before the cursor: a message stamped on the boundary is never skipped
TEXT_LIMIT = 2000  # the Send API's message.text limit, in characters
EXPANDED = 25  # messages expanded per conversation in the list call
THROTTLED = {4, 17, 32, 613, *range(80001, 80010)}  # Graph's throttling codes (app, user, page, BUC)
TRANSIENT = {1, 2}
AUTH = {102, 190, *range(200, 300)}
OUTSIDE_WINDOW = 2018278  # subcode of code 10: "This message is sent outside of allowed window"
GRAPH_TIME = "%Y-%m-%dT%H:%M:%S%z"
NAMES_PER_CALL = 50  # Graph's multiple-ID read takes at most 50 ids
NAMES_KEPT = 10_000
WEBHOOK_LOOKUP_TIMEOUT = 2.0  # seconds a webhook waits for a name before storing the bare id


class GraphApiError(Exception):
    """A Graph error answer, kept whole for `translate`."""

    def __init__(self, response: requests.Response, error: Mapping[str, Any]) -> None:
        super().__init__(str(error.get("message", ""))[:300])
        self.response = response
        self.code = _as_int(error.get("code"))
        self.subcode = _as_int(error.get("error_subcode"))
        self.message = str(error.get("message", ""))[:300]


@dataclass(frozen=True)
class MetaPage:
    """One poll page, translated; `cursor` is the newest conversation `updated_time` seen (epoch seconds)."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool
    known: int = 0


class _Unusable(ValueError):
    """A message that cannot become an Interaction; the text says why."""


class MetaChannel(Connector):
    """One Facebook Page's Messenger conversations and, if linked, its Instagram account's DMs.

    Args:
        page_id: the Page's id; the page access token must be this page's.
        page_token: a Page access token with pages_messaging (and instagram_manage_messages).
        instagram_id: the Page's linked Instagram professional account id (None: no Instagram).
        human_agent: answer between 24 hours and 7 days with the HUMAN_AGENT tag (the app needs
            Meta's Human Agent permission); off, such a reply becomes a note to the agent.
        clock: epoch seconds, for the windows when an answer of Meta's has no `Date` header (Meta's own
            clock, that header, is used whenever it is there).
    """

    name = "meta"
    tracks_delivery = False  # delivery and read receipts come as webhooks crmhub does not subscribe to yet

    def __init__(self, *, page_id: str, page_token: str, instagram_id: str | None = None,
                 human_agent: bool = True, graph_version: str = DEFAULT_VERSION, base_url: str | None = None,
                 page_size: int = 25, timeout: float = 30.0, retrier: Retrier | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(retrier)
        self.page_id = page_id
        self.instagram_id = instagram_id
        self.human_agent = human_agent
        self.page_size = max(1, min(100, page_size))
        self._token = page_token
        self._root = f"{GRAPH_HOST}/{graph_version}"
        self._clock = clock
        self._names: OrderedDict[str, str] = OrderedDict()
        self._session = build_session(base_url=base_url, observer=self.observe_http, timeout=timeout,
                                      before=self.before_http, after=self.after_http)

    # ---- wire ----------------------------------------------------------------------
    def translate(self, exc: Exception) -> ConnectorError | None:
        """Graph errors by code: throttling waits, 1/2 and 5xx are transient, token codes need config."""
        if not isinstance(exc, GraphApiError):
            return None
        status = exc.response.status_code
        message = f"HTTP {status}: (#{exc.code}) {exc.message}"[:300]
        code = f"{exc.code}/{exc.subcode}" if exc.subcode else str(exc.code or "")
        if exc.code in THROTTLED:
            return RateLimited(message, retry_after=_regain_seconds(exc.response), system=self.name, status=status,
                               code=code)
        if exc.code in TRANSIENT or status >= 500:
            return Timeout(message, system=self.name, status=status, code=code)
        if exc.code in AUTH or (exc.code == 10 and exc.subcode != OUTSIDE_WINDOW):
            return AuthError(f"{message} (check the page access token and its permissions)", system=self.name,
                             status=status, code=code)
        if exc.code == 10:
            return Rejected(message, system=self.name, status=status, code="outside-window")
        return classify_status(status if status >= 400 else 400, message, system=self.name, code=code)

    def _graph(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
               body: Mapping[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """One Graph request; an `error` answer raises GraphApiError (mapped by `translate`)."""
        return self._graph_dated(method, path, params=params, body=body, timeout=timeout)[0]

    def _graph_dated(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                     body: Mapping[str, Any] | None = None,
                     timeout: float | None = None) -> tuple[dict[str, Any], float]:
        """`_graph`, with Meta's clock at the answer: its `Date` header (our `clock` when absent or garbled).

        The windows are measured on Meta's clock against Meta's timestamps, so
        a skewed local clock never sends outside a window or holds a reply back.
        """
        url = path if path.startswith("http") else f"{self._root}/{path.lstrip('/')}"
        response = self._session.request(method, url, params=params, json=body, timeout=timeout,
                                         headers={"Authorization": f"Bearer {self._token}"})
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {"error": {"message": f"not a JSON object ({response.reason})", "code": 0}}
        if response.status_code >= 400 or "error" in answer:
            error = answer.get("error") if isinstance(answer.get("error"), dict) else {"message": response.reason}
            raise GraphApiError(response, error)
        return answer, _server_time(response) or self._clock()

    def get(self, operation: str, path: str, **params: Any) -> dict[str, Any]:
        """A read through the retry layer (also what `crmhub check` calls)."""
        return self.call(operation, partial(self._graph, "GET", path, params=params))

    def ours(self, channel: Channel) -> Identity:
        """Our side of `channel`: the Page on Messenger, its Instagram account on Instagram."""
        if channel is Channel.INSTAGRAM:
            if not self.instagram_id:
                raise Rejected("this page has no Instagram account configured (channels.meta.instagram_id)",
                               system=self.name)
            return Identity(IdentityKind.INSTAGRAM, self.instagram_id)
        return Identity(IdentityKind.MESSENGER, self.page_id)

    def channels(self) -> tuple[Channel, ...]:
        return (Channel.MESSENGER, Channel.INSTAGRAM) if self.instagram_id else (Channel.MESSENGER,)

    def names(self, channel: Channel, ids: Iterable[str], *, retry: bool = True) -> dict[str, str]:
        """People's display names (Messenger: name; Instagram: username) by scoped id, remembered once read.

        One call for up to 50 unknown ids (`GET /?ids=...`, the User Profile API); with `retry=False` it
        asks once, waiting at most WEBHOOK_LOOKUP_TIMEOUT (the webhook receiver, which must answer fast). Raises ConnectorError when Meta cannot
        be asked; a webhook item then keeps its bare id.
        """
        field = "username" if channel is Channel.INSTAGRAM else "name"
        ids = list(ids)
        wanted = sorted({i for i in ids if i.isdigit()} - set(self._names))[:NAMES_PER_CALL]
        if wanted:
            read = partial(self._graph, "GET", "", params={"ids": ",".join(wanted), "fields": field})
            if retry:
                answer = self.call("profiles.read", read)
            else:  # the webhook receiver: once, briefly, so Meta's delivery is answered within its few seconds
                with self.map_errors("profiles.read"):
                    answer = read(timeout=WEBHOOK_LOOKUP_TIMEOUT)
            for person_id, profile in answer.items():
                if isinstance(profile, dict) and isinstance(profile.get(field), str):
                    self._names[person_id] = profile[field][:200]
            while len(self._names) > NAMES_KEPT:
                self._names.popitem(last=False)
        return {i: self._names[i] for i in ids if i in self._names}

    # ---- polling ---------------------------------------------------------------------
    def conversation_pages(self, channel: Channel, cursor: str | None) -> Iterator[MetaPage]:
        """Messages of conversations updated since `cursor` (less OVERLAP), page by page of conversations."""
        ours = self.ours(channel)
        floor = float(cursor) - OVERLAP if cursor else 0.0
        newest = float(cursor) if cursor else 0.0
        params: dict[str, Any] = {
            "platform": PLATFORMS[channel], "limit": self.page_size,
            "fields": f"id,updated_time,participants,messages.limit({EXPANDED}){{{MESSAGE_FIELDS}}}"}
        url: str | None = f"{self.page_id}/conversations"
        seen: set[str] = set()
        while url is not None:
            answer = self.get("conversations.page", url, **params)
            good: list[Interaction] = []
            bad: list[Malformed] = []
            stop = False
            for conversation in _list(answer.get("data")):
                if not isinstance(conversation, dict):
                    bad.append(Malformed(SOURCE, unusable_ref(conversation), "a conversation that is not a JSON "
                                         "object", {"item": repr(conversation)[:200]}))
                    continue
                updated = _epoch(conversation.get("updated_time"))
                if updated is not None and updated < floor:
                    stop = True
                    break
                newest = max(newest, updated or 0.0)
                for message in self._conversation_messages(conversation, floor):
                    _collect(channel, ours, message, good, bad)
            after = _next(answer) if not stop else None
            if after is not None and after in seen:
                after = None  # a cursor given twice: Graph's paging ended in a loop; stop rather than spin
            last = after is None
            yield MetaPage(good, bad, str(newest) if newest else None, last)
            if last:
                return
            seen.add(after or "")
            url, params = after, {}

    def _conversation_messages(self, conversation: Mapping[str, Any], floor: float) -> Iterator[Any]:
        """The conversation's messages created at or after `floor`: the expansion, then its edge if needed."""
        edge = conversation.get("messages") if isinstance(conversation.get("messages"), dict) else {}
        page: Mapping[str, Any] = edge
        followed: set[str] = set()
        while True:
            for message in _list(page.get("data")):
                created = _epoch(message.get("created_time")) if isinstance(message, dict) else None
                if created is not None and created < floor:
                    return
                yield message
            following = _next(page)
            if following is None or following in followed:  # the end, or Graph's paging in a loop
                return
            followed.add(following)
            page = self.get("messages.page", following)

    # ---- sending ---------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SentMessage:
        """Send one reply in its conversation, inside Meta's windows (see the module doc).

        Raises:
            Rejected: outside the window (the reply becomes a note on the case), or Meta refused it.
            TransientError: no answer or throttled after the retry layer's attempts.
        """
        channel = message.channel
        ours = self.ours(channel)
        user_id = message.recipient.value
        recent, meta_now = self._recent(channel, user_id)
        request = self._request_for(message, recent, user_id, meta_now)
        since_ids = set(message.already_sent)

        def find_sent(since: datetime) -> SentMessage | None:
            for found in self._recent(channel, user_id)[0]:
                created = _epoch(found.get("created_time"))
                if (_from(found) == ours.value and found.get("message") == request["message"]["text"]
                        and found.get("id") not in since_ids and created is not None
                        and created >= since.timestamp()):
                    echo = graph_interaction(channel, ours, found)
                    return SentMessage(str(found["id"]), echo=echo, found_earlier=True)
            return None

        def send_now() -> SentMessage:
            answer, sent_at = self._graph_dated("POST", f"{self.page_id}/messages", body=request)
            mid = str(answer.get("message_id") or "")
            if not mid:
                raise Rejected("Meta answered the send without a message_id", system=self.name)
            echo = Interaction(channel, Direction.OUTBOUND, mid, message.conversation_key, ours, message.recipient,
                               request["message"]["text"], datetime.fromtimestamp(sent_at, tz=UTC),
                               raw={"message_id": mid, "recipient_id": answer.get("recipient_id")})
            return SentMessage(mid, echo=echo)

        return self.send_checked("messages.send", message.uncertain_since, find_sent, send_now)

    def _recent(self, channel: Channel, user_id: str) -> tuple[list[dict[str, Any]], float]:
        """The latest messages of our conversation with `user_id`, newest first ([] when there is none),
        and Meta's time of the answer (its `Date` header), which the windows are measured against."""
        answer = self.call("conversations.with", partial(
            self._graph_dated, "GET", f"{self.page_id}/conversations",
            params={"platform": PLATFORMS[channel], "user_id": user_id,
                    "fields": f"id,messages.limit({EXPANDED}){{{MESSAGE_FIELDS}}}"}))
        body, now = answer
        for conversation in _list(body.get("data")):
            edge = conversation.get("messages") if isinstance(conversation, dict) else None
            return [m for m in _list(edge.get("data") if isinstance(edge, dict) else None) if isinstance(m, dict)], now
        return [], now

    def _request_for(self, message: OutboundMessage, recent: list[dict[str, Any]], user_id: str,
                     now: float) -> dict[str, Any]:
        """The Send API body for the window the conversation is in; Rejected when every window is closed."""
        theirs = [t for t in (_epoch(m.get("created_time")) for m in recent if _from(m) == user_id) if t]
        age = timedelta(seconds=max(0.0, now - max(theirs))) if theirs else None
        text = fit_text(message.text, TEXT_LIMIT)
        body: dict[str, Any] = {"recipient": {"id": user_id}, "message": {"text": text}}
        if age is not None and age <= STANDARD_WINDOW:
            return {**body, "messaging_type": "RESPONSE"}
        if age is not None and age <= HUMAN_AGENT_WINDOW and self.human_agent:
            return {**body, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        when = "has never written" if age is None else f"last wrote {age.days} days ago"
        allowed = "7 days with the human-agent tag" if self.human_agent else \
            "24 hours (the human-agent tag, up to 7 days, is off: channels.meta.human_agent)"
        raise Rejected(f"not sent: the customer {when}, and Meta lets a page answer only within {allowed}. "
                       "Reach the customer another way, or wait until they write again.",
                       system=self.name, code="outside-window")


# ---- webhooks -------------------------------------------------------------------------------
SIGNATURE_HEADER = "X-Hub-Signature-256"
_CHALLENGE = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is `sha256=<hex HMAC-SHA256 of the raw body with the app secret>` (constant time)."""
    if not header or not app_secret:
        return False
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode("utf-8", "replace"))


def handshake(args: Mapping[str, str], verify_token: str) -> str | None:
    """The body to answer Meta's verification request with (the challenge), or None to refuse (403).

    Only a challenge shaped like Meta's (short, alphanumeric) is echoed: the
    endpoint never repeats text an outsider chose.
    """
    token = args.get("hub.verify_token") or ""
    challenge = args.get("hub.challenge") or ""
    if args.get("hub.mode") != "subscribe" or not verify_token or not _CHALLENGE.fullmatch(challenge):
        return None
    return challenge if hmac.compare_digest(token.encode(), verify_token.encode()) else None


@dataclass
class MetaEventBatch:
    """What one signed payload holds for us: Interactions, dead letters, and events not ours to store."""

    interactions: list[Interaction]
    malformed: list[Malformed]
    ignored: int = 0


NameFn = Callable[[Channel, Iterable[str]], Mapping[str, str]]
"""Display names by scoped id (`MetaChannel.names`); may raise, and then the ids stay bare."""


def translate_webhook(payload: Any, page_id: str, instagram_id: str | None,
                      names: NameFn | None = None) -> MetaEventBatch:
    """A `messages` / `message_echoes` payload as the poll's Interactions; never raises on bad input.

    Who "we" are comes from settings, never from the payload: an entry for
    another page or account is ignored whole. `names` fills the customers'
    display names (webhooks carry none) in one lookup per payload.
    """
    batch = MetaEventBatch([], [])
    if not isinstance(payload, dict) or payload.get("object") not in ("page", "instagram"):
        batch.malformed.append(Malformed(SOURCE, unusable_ref(payload), "not a Messenger or Instagram webhook payload",
                                         payload if isinstance(payload, dict) else {"payload": repr(payload)[:200]}))
        return batch
    channel = Channel.INSTAGRAM if payload["object"] == "instagram" else Channel.MESSENGER
    our_value = instagram_id if channel is Channel.INSTAGRAM else page_id
    ours = Identity(KINDS[channel], our_value or "")
    for entry in _list(payload.get("entry")):
        events = _list(entry.get("messaging")) if isinstance(entry, dict) else []
        if not our_value or not isinstance(entry, dict) or str(entry.get("id")) != our_value:
            batch.ignored += max(1, len(events))
            continue
        for event in events:
            message = event.get("message") if isinstance(event, dict) else None
            if not isinstance(message, dict) or message.get("is_deleted") or message.get("is_unsupported"):
                batch.ignored += 1
                continue
            _collect(channel, ours, _as_graph(event, message), batch.interactions, batch.malformed)
    if names is not None and batch.interactions:
        batch.interactions = _named(channel, batch.interactions, names)
    return batch


def _named(channel: Channel, items: list[Interaction], names: NameFn) -> list[Interaction]:
    """The items with their customers' display names, when Meta tells them (else as they were)."""
    try:
        known = names(channel, {i.customer.value for i in items})
    except ConnectorError:
        return items

    def name(who: Identity) -> Identity:
        return replace(who, display=known.get(who.value, who.display))

    return [replace(i, sender=name(i.sender), recipient=name(i.recipient)) for i in items]


# ---- helpers ----------------------------------------------------------------------------------
def graph_interaction(channel: Channel, ours: Identity, message: Mapping[str, Any]) -> Interaction:
    """The one translation both paths use: Graph's message shape (the webhook's is rebuilt into it)."""
    kind = KINDS[channel]
    mid = message.get("id")
    if not isinstance(mid, str) or not mid:
        raise _Unusable("message without an id")
    sender = _party(message.get("from"), kind)
    to = message.get("to")
    recipients = to.get("data") if isinstance(to, dict) else None
    recipient = _party(_list(recipients)[0] if _list(recipients) else None, kind)
    occurred = _epoch(message.get("created_time"))
    if occurred is None:
        raise _Unusable("created_time missing or not a Graph timestamp")
    if ours.value not in (sender.value, recipient.value):
        raise _Unusable("a message between two parties neither of which is us")
    direction = Direction.OUTBOUND if sender.value == ours.value else Direction.INBOUND
    customer = recipient if direction is Direction.OUTBOUND else sender
    text = message.get("message") if isinstance(message.get("message"), str) else ""
    media = tuple(_media(message.get("attachments")))
    if not text and not media:
        raise _Unusable("a message with neither text nor attachments")
    return Interaction(channel, direction, mid, f"{PLATFORMS[channel]}:{ours.value}:{customer.value}",
                       sender, recipient, text, datetime.fromtimestamp(occurred, tz=UTC), media=media,
                       raw=dict(message))


def _collect(channel: Channel, ours: Identity, message: Any, good: list[Interaction], bad: list[Malformed]) -> None:
    try:
        if not isinstance(message, dict):
            raise _Unusable("a message that is not a JSON object")
        good.append(graph_interaction(channel, ours, message))
    except (_Unusable, KeyError, TypeError, ValueError) as exc:
        mid = message.get("id") if isinstance(message, dict) else None
        ref = f"{channel}:{mid}" if isinstance(mid, str) and mid else unusable_ref(message)
        bad.append(Malformed(SOURCE, ref, str(exc) or type(exc).__name__,
                             message if isinstance(message, dict) else {"item": repr(message)[:200]}))


def unusable_ref(item: Any) -> str:
    """A dead letter's ref for something without a message id: a digest of it, so repeats are one letter."""
    text = item if isinstance(item, bytes) else json.dumps(item, sort_keys=True, default=repr).encode()
    return "meta-webhook-" + hashlib.sha256(text).hexdigest()[:24]


def _as_graph(event: Mapping[str, Any], message: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook `messaging` event rebuilt as the Graph message the poll reads."""
    stamp = event.get("timestamp")
    created = (datetime.fromtimestamp(stamp / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
               if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None)
    sender = event.get("sender") if isinstance(event.get("sender"), dict) else {}
    recipient = event.get("recipient") if isinstance(event.get("recipient"), dict) else {}
    attachments = [{"file_url": (a.get("payload") or {}).get("url")} for a in _list(message.get("attachments"))
                   if isinstance(a, dict) and isinstance(a.get("payload"), dict)]
    graph: dict[str, Any] = {"id": message.get("mid"), "created_time": created,
                             "from": {"id": sender.get("id")}, "to": {"data": [{"id": recipient.get("id")}]},
                             "message": message.get("text") or ""}
    if attachments:
        graph["attachments"] = {"data": attachments}
    return graph


def _party(value: Any, kind: IdentityKind) -> Identity:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str | int) or not str(value["id"]).isdigit():
        raise _Unusable("from/to without a numeric scoped id")
    display = value.get("name") or value.get("username") or ""
    return Identity(kind, str(value["id"]), display=str(display)[:200])


def _from(message: Mapping[str, Any]) -> str | None:
    sender = message.get("from")
    return str(sender.get("id")) if isinstance(sender, dict) else None


def _media(attachments: Any) -> Iterator[str]:
    edge = attachments.get("data") if isinstance(attachments, dict) else attachments
    for item in _list(edge):
        if not isinstance(item, dict):
            continue
        url = (item.get("image_data") or {}).get("url") or (item.get("video_data") or {}).get("url") \
            or item.get("file_url")
        if isinstance(url, str) and url:
            yield url


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _next(answer: Mapping[str, Any]) -> str | None:
    paging = answer.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    return following if isinstance(following, str) and following else None


def _epoch(value: Any) -> float | None:
    """A Graph time (ISO 8601 with +0000, or Unix seconds as some Messenger docs show) in epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, GRAPH_TIME).timestamp()
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _server_time(response: requests.Response) -> float | None:
    """The answer's `Date` header in epoch seconds, or None."""
    try:
        return parsedate_to_datetime(response.headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _regain_seconds(response: requests.Response) -> float | None:
    """`estimated_time_to_regain_access` (minutes) of the throttled business, from X-Business-Use-Case-Usage."""
    try:
        usage = json.loads(response.headers.get("X-Business-Use-Case-Usage") or "{}")
        minutes = max(int(item.get("estimated_time_to_regain_access") or 0)
                      for items in usage.values() for item in items)
    except (ValueError, TypeError, AttributeError):
        return None
    return minutes * 60.0 if minutes > 0 else None
