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

The youngest generation is then collected every `YOUNG` allocations net of
frees instead of Python's 700: a cycle allocates objects by the hundred
thousand, nearly all freed by reference counting before any collection
sees them, so the 700 made about a hundred young collections per warm cycle
(17 ms of 300 messages) where 10,000 makes two (4 ms). Cyclic garbage waits
for at most that many allocations longer: a few MB at worst.
"""

from __future__ import annotations

import gc
import threading

YOUNG = 10_000  # allocations between two collections of the youngest generation (Python's default: 700)
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
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG, middle, oldest)
        _settled.set()
        return True
