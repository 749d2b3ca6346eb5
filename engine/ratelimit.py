"""A rate limiter for one channel in one process. Pure apart from the clock it is given."""

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Spaces acquisitions at least 1/rate seconds apart, with a burst of one second."""

    def __init__(self, rate_per_second: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate_per_second
        self._clock = clock
        self._next = clock() - 1.0  # allow an initial burst of up to one second's worth

    def reserve(self) -> float:
        """Reserve the next slot; returns how long the caller must wait for it."""
        now = self._clock()
        slot = max(self._next + self.interval, now - 1.0)
        self._next = slot
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
