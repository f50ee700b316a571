"""How long a search runs: a fixed number of rounds, or as many as start within a time limit.

A time limit is how strategies are compared at equal wall time, and what a user with a
few minutes rather than a count of evaluations asks for (``factory search --time-limit``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator


def rounds(count: int, seconds: float | None = None) -> Iterator[float]:
    """Each round's progress in [0, 1]: ``count`` rounds, or with ``seconds`` as many as start before the time is up
    (at least one), the progress then being the share of the time spent. Annealed schedules follow the progress."""
    if seconds is None:
        for i in range(count):
            yield i / max(count - 1, 1)
        return
    start = time.monotonic()
    elapsed = 0.0
    while True:
        yield min(elapsed / seconds, 1.0) if seconds > 0 else 1.0
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            return
