"""The state store: ledger, cursors, identity graph, mirror, outbox, dead letters."""

from crmhub.store.db import StateStore, open_store

__all__ = ["StateStore", "open_store"]
