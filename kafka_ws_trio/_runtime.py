"""Process-wide settings for a process whose main job is the proxy."""

from __future__ import annotations

import gc
from typing import Final

#: Allocations between young-generation collections, and how many collections of each
#: generation trigger one of the next (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS: Final = (50_000, 50, 100)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a proxy process. Call once, after start-up.

    Objects that exist now (modules, classes, configuration) are moved out of
    the collector's reach with :func:`gc.freeze`, and collections run far less
    often: most of what a session allocates per frame is freed by reference
    counting anyway, and with hundreds of sessions open every full collection
    walks all of their objects while no frame is served. In the fan-out
    benchmark at 1,000 sessions this roughly halved the p99 latency (see
    docs/BENCHMARKS.md). It changes the whole interpreter, so the proxy's
    command line calls it and :func:`serve_proxy` does not: an application
    embedding the proxy decides for itself.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
