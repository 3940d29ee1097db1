"""The daemon's heap after start-up: collected once, then kept out of the cyclic collector's full passes.

A warm daemon holds a large heap that lives as long as the process: the
SDKs' modules and models, SQLAlchemy's metadata and compiled statements,
phonenumbers' metadata, the language model's tables. Python's full (oldest
generation) collection walks all of it, and comes every few thousand
surviving allocations: one such pass in a warm cycle of 300 messages cost
0.44 ms per message on PostgreSQL (issue 13), more than the rest of routing.
`gc.freeze()` moves every object alive at that moment to a permanent
generation the collector skips; reference counting still frees them as
before, and everything made later is collected as before. It is done once,
after the first full cycle (everything that lives long exists by then), and
after a collection, so no garbage of start-up is kept forever.
"""

from __future__ import annotations

import gc
import threading

_settled = threading.Event()
_lock = threading.Lock()


def settle_once() -> bool:
    """Collect, then freeze what is left, the first time it is called in this process; whether it did."""
    if _settled.is_set():
        return False
    with _lock:
        if _settled.is_set():
            return False
        gc.collect()
        gc.freeze()
        _settled.set()
        return True
