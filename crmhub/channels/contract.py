"""The channel contract: what a channel module declares and does, so the engine and wiring name no channel.

A channel module (one per registry entry, `crmhub.channels.registry`) is a
`ChannelModule` instance. The wiring (`crmhub.app`) asks it to build its
connector from the configuration, then for its poll streams, its webhook
routes, its reply senders, its API budget, the identities that are ours on
it, how it reaches a claimed identity with a one-time code, and its
`crmhub check` probe. The engine (`crmhub.sync`) sees only the
canonical model those produce (Interactions, OutboundMessage, SentMessage).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from crmhub.channels import registry
from crmhub.model import Channel, CodeRoute, Identity, IdentityKind, ReplyStatus

if TYPE_CHECKING:
    from fastapi import Request
    from fastapi.responses import Response

    from crmhub.check._report import Finding
    from crmhub.check._where import Where
    from crmhub.config import Config
    from crmhub.connectors._budget import Budget
    from crmhub.connectors._retry import Retrier
    from crmhub.sync.replies import ChannelSender
    from crmhub.webhooks import WebhookKit

PagesFn = Callable[[str | None], Iterable[Any]]
"""A poll stream: pages (each with `.interactions`, `.malformed`, `.cursor`) from a cursor (None: from the start)."""
KnownFn = Callable[[Sequence[Channel], Sequence[str]], set[str]]
"""Which of some external ids the ledger already holds (one query), so a poll can skip them."""
StatusFn = Callable[[str, str], object]
"""Told (message id, vendor status) for each signed delivery-status callback."""


class ChannelConnector(Protocol):
    """What the wiring needs of any built connector: its name, pacing and HTTP metrics hooks."""

    name: str
    budget: Any
    http_observer: Any


@dataclass(frozen=True)
class WebhookRoute:
    """One webhook endpoint: its path (`/webhooks/<name>/...`), HTTP methods and async handler."""

    path: str
    methods: tuple[str, ...]
    endpoint: Callable[[Request], Awaitable[Response]]


class Hooks(Protocol):
    """A channel's webhook handlers, given the receiver's shared steps (body limits, storing, counting)."""

    def routes(self, kit: WebhookKit) -> list[WebhookRoute]: ...


@dataclass(frozen=True)
class Attachment:
    """What the wiring offers a built connector: the configuration, the ledger lookup, a monotonic clock."""

    config: Config
    known: KnownFn
    monotonic: Callable[[], float]


class ChannelModule(ABC):
    """One channel module. Subclasses set `name` (its registry key) and `credentials_fix`."""

    name: str
    credentials_fix: str = "check the channel's credentials in settings.yaml"
    """What `crmhub check` tells an admin when the vendor refuses crmhub's credentials."""

    # ---- what it is --------------------------------------------------------------------------
    @property
    def channels(self) -> tuple[Channel, ...]:
        """The `Channel` values it reports (its registry entry's)."""
        return tuple(Channel(value) for value in registry.channels_of(self.name))

    @property
    def identity_kinds(self) -> tuple[IdentityKind, ...]:
        return tuple(IdentityKind(kind) for kind in registry.entry(self.name).identity_kinds)

    def settings(self, config: Config) -> Any:
        """Its `channels.<name>` block (a model of the registry entry's `settings`), None when absent."""
        return getattr(config.settings.channels, self.name)

    # ---- building ----------------------------------------------------------------------------
    @abstractmethod
    def build(self, config: Config, retrier: Retrier) -> Any:
        """The connector (a `ChannelConnector`), from the validated configuration (secrets via `config.secret`)
        and the shared retrier."""

    def block_problems(self, block: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        """Cross-key problems of its enabled `channels.<name>` block as written (YAML, before the model checks
        each key): (key path inside the block, "what is wrong; the fix"), reported with file and line."""
        return []

    def attach(self, connector: Any, wiring: Attachment) -> None:
        """Called once the hub holds the connector (e.g. to give its polls the ledger's `known`)."""

    def budget(self, config: Config, common: Mapping[str, Any]) -> Budget | None:
        """Its API budget (`Budget(self.name, ..., **common)`), None when the vendor publishes none for us."""
        return None

    # ---- reading -----------------------------------------------------------------------------
    @abstractmethod
    def streams(self, block: Any) -> list[str]:
        """The poll streams its settings block turns on, in polling order (lease names `poll:<name>:<stream>`)."""

    @abstractmethod
    def pages(self, connector: Any) -> Mapping[str, PagesFn]:
        """Each poll stream's pages, by stream name."""

    @abstractmethod
    def partition(self, connector: Any) -> str:
        """The cursor partition (the account polled), so two accounts never share a cursor."""

    def poll_every(self, block: Any) -> timedelta:
        return block.poll_every  # type: ignore[no-any-return]

    def waiter(self, connector: Any, block: Any) -> Callable[[float], bool] | None:
        """A blocking wait for new items (IMAP IDLE): `wait(seconds)` is True when the poll should run now.

        `crmhub run` keeps one thread in it per channel that has one and moves
        the channel's poll job forward when it says so; the interval poll still
        runs (None: the channel is polled on its interval only).
        """
        return None

    def close(self, connector: Any) -> None:
        """Let go of what the connector holds open (a waiter's connection), when the hub closes."""

    def hooks(self, config: Config, connector: Any, on_status: StatusFn | None) -> Hooks | None:
        """Its webhook handlers (None: it has none); `on_status` records delivery-status callbacks."""
        return None

    def webhook_outcome(self, connector: Any, route: str, outcome: str) -> None:
        """Told every outcome of its webhook routes (e.g. the poll re-reads less while webhooks are healthy)."""

    # ---- replying ----------------------------------------------------------------------------
    def senders(self, connector: Any) -> Mapping[Channel, ChannelSender | Any]:
        """The connector replying on each of its channels (`send` finds before it resends; see ChannelSender)."""
        return {}

    def reply_status(self, status: str) -> ReplyStatus | None:
        """A vendor delivery status (from a callback) as a reply status; None: not one we track."""
        return None

    def status_advances(self, previous: str | None, status: str) -> bool:
        """Whether a callback's status moves a message forward from `previous` (repeats, steps back: False)."""
        return previous != status

    # ---- identity ----------------------------------------------------------------------------
    def own_identities(self, block: Any) -> set[Identity]:
        """Our own addresses on this channel: never a customer's (statements naming them are ignored)."""
        return set()

    def code_routes(self, block: Any) -> list[CodeRoute]:
        """How it reaches claimed identities with one-time link codes (`statements: confirm_by_code`): a route
        per identity kind of its registry entry's `codes`, from our address on it, with its default text;
        none while the block is disabled or has no address to send from."""
        return []

    # ---- crmhub check ------------------------------------------------------------------------
    def check(self, connector: Any, config: Config, where: Where) -> Iterator[Finding]:
        """Read-only probes for `crmhub check` (default: `crmhub.check.<name>.check`, when that module exists)."""
        import importlib

        module = importlib.import_module(f"crmhub.check.{self.name}")
        yield from module.check(connector, config, where)
