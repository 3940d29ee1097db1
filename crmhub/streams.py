"""The periodic readers a configuration runs, by the stream names their leases carry.

Each is read by one daemon at a time (`crmhub.store.leases`); `crmhub status`
shows who holds each. Names: `poll:<source>:<stream>` (a channel's poll
stream), `mirror:<crm>` (its contact mirror), `cases:<crm>` (its cases'
states), `replies:<crm>` (its agents' replies) and `replies:status` (the
delivery statuses of sent replies, asked of the channels).
"""

from __future__ import annotations

from typing import Any

REPLY_STATUSES = "replies:status"


def poll(source: str, stream: str) -> str:
    return f"poll:{source}:{stream}"


def mirror(crm: str) -> str:
    return f"mirror:{crm}"


def cases(crm: str) -> str:
    return f"cases:{crm}"


def replies(crm: str) -> str:
    return f"replies:{crm}"


def channel_streams(settings: Any) -> dict[str, list[str]]:
    """The poll streams of each enabled channel, in polling order (settings: a `Settings`)."""
    from crmhub.channels import registry

    channels = settings.channels
    return {name: registry.load(name).streams(getattr(channels, name)) for name in channels.enabled_names()}


def all_streams(settings: Any, crms: list[str]) -> list[str]:
    """Every stream a daemon with these settings reads, `crms` being the enabled CRMs it wires."""
    names = [poll(source, stream) for source, streams in channel_streams(settings).items() for stream in streams]
    for crm in crms:
        names += [mirror(crm), cases(crm)]
    if settings.replies.enabled:
        names += [replies(crm) for crm in crms] + [REPLY_STATUSES]
    return names
