"""The daemon settles its heap once, after its first clean cycle (`crmhub.heap`)."""

from __future__ import annotations

import gc

from crmhub import heap


def test_the_heap_is_settled_once_per_process() -> None:
    heap.settle_once()  # a hub's first clean cycle calls it; in this process maybe already
    assert not heap.settle_once()
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == heap.YOUNG
