"""Zendesk ticket comments as crmhub writes them: one comment per run of a ticket's writes.

Every `update_many` job can add one comment per ticket, so writing each
follow-up as its own comment costs a job (a submit and its polls) per
further message on a ticket (issue 13). Instead, a batch's writes for one
ticket are folded: consecutive writes with the same visibility and author
(inbound: public, by the requester; outbound: a private note by the API
agent) become ONE comment. Different runs stay different comments, in the
messages' order, since Zendesk cannot mix a public and a private text, or
two authors, in one comment.

Format (docs/connectors/zendesk.md): a comment carrying one write is the
message as it was always written. A folded comment has one paragraph per
message, headed by its time (UTC) and sender, separated by blank lines.
The audit metadata names every crmhub key the comment carries:
`crmhub_key` (the first, as before) and `crmhub_keys` (all of them), so
every "is this key already on the ticket" look-up finds keys inside folds.
A run ends before it would exceed Zendesk's 64 KB comment body, so folding
never truncates a message that fits on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any

from crmhub.connectors._base import fit
from crmhub.model import Direction, HistoryWrite

KEY_FIELD = "crmhub_key"  # audit metadata key carrying the (first) HistoryWrite.key
KEYS_FIELD = "crmhub_keys"  # every HistoryWrite.key a folded comment carries
COMMENT_BYTES = {"body": 64_000}
SEPARATOR = "\n\n"


def body_of(write: HistoryWrite) -> str:
    """The comment text of one write when history.yaml gives no `body` template."""
    item = write.interaction
    lines = [item.text] if item.text else []
    if item.call is not None:
        lines.append(f"{item.channel.label} {item.direction.value}, {item.call.duration_seconds} s, "
                     f"{item.call.status}" + (f", recording: {item.call.recording_url}"
                                              if item.call.recording_url else ""))
    lines += [f"Attachment: {url}" for url in item.media]
    return "\n".join(lines) or f"({item.channel.label} {item.direction.value} without text)"


def _text(write: HistoryWrite) -> str:
    return write.fields.get("body") or body_of(write)


def _paragraph(write: HistoryWrite) -> str:
    """One message of a folded comment: its time and sender, then its text."""
    item = write.interaction
    sender = item.sender.display or item.sender.value
    return f"{item.occurred_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, {sender}:\n{_text(write)}"


def comment_fields(writes: Sequence[HistoryWrite], author_id: int | None) -> dict[str, Any]:
    """The `comment` and audit `metadata` of one ticket update carrying `writes` (one run)."""
    inbound = writes[0].interaction.direction is Direction.INBOUND
    body = _text(writes[0]) if len(writes) == 1 else SEPARATOR.join(_paragraph(w) for w in writes)
    comment = fit({"body": body, "public": inbound}, COMMENT_BYTES, utf8=True)
    if inbound and author_id is not None:
        comment["author_id"] = author_id
    metadata: dict[str, Any] = {KEY_FIELD: writes[0].key}
    if len(writes) > 1:
        metadata[KEYS_FIELD] = [w.key for w in writes]
    return {"comment": comment, "metadata": metadata}


def keys_of(metadata: Mapping[str, Any] | None) -> set[str]:
    """Every crmhub key an update's metadata (as sent, or a comment's `metadata.custom`) carries."""
    custom = metadata or {}
    keys = {str(k) for k in custom.get(KEYS_FIELD) or ()}
    if custom.get(KEY_FIELD):
        keys.add(str(custom[KEY_FIELD]))
    return keys


def runs(writes: Iterable[HistoryWrite], authors: Mapping[int, int]) -> list[list[HistoryWrite]]:
    """`writes` (one ticket's, in order) cut into runs that can share one comment.

    A run keeps one visibility and author (`authors`: person -> user id) and
    stays within the body limit, so nothing folded is cut.
    """
    folded: list[list[HistoryWrite]] = []
    last: tuple[bool, int | None] | None = None
    size = 0
    for write in writes:
        inbound = write.interaction.direction is Direction.INBOUND
        who = (inbound, authors.get(write.person_id) if inbound else None)
        grown = size + len(SEPARATOR) + len(_paragraph(write).encode())
        if folded and who == last and grown <= COMMENT_BYTES["body"]:
            folded[-1].append(write)
            size = grown
        else:
            folded.append([write])
            size = len(_paragraph(write).encode())
        last = who
    return folded
