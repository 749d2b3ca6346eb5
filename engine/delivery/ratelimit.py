"""The rate limiter for one channel of one campaign, shared through reserved send slots.

Pure apart from the clock and the `reserve` callable it is given (the database, or a
plain function in one process).
"""

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

Reserve = Callable[[int, float], Awaitable[float]]  # (slots, interval) -> first slot time


class RateLimiter:
    """Spaces sends at least 1/rate seconds apart across everyone who shares `reserve`.

    Slots are reserved a quarter of a second's worth at a time (at most 1,000), so the
    shared store sees a few writes per second whatever the rate. Whoever shares it may
    together exceed the rate by at most one block each, once.
    """

    def __init__(
        self,
        rate_per_second: float,
        reserve: Reserve,
        clock: Callable[[], float] = time.time,
        block_seconds: float = 0.25,
    ) -> None:
        self.interval = 1.0 / rate_per_second
        self.block = max(1, min(1000, int(rate_per_second * block_seconds)))
        self._reserve, self._clock = reserve, clock
        self._slots: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, count: int = 1) -> None:
        """Wait for this caller's `count` slots (a batch goes at its last slot)."""
        slot = 0.0
        async with self._lock:
            for _ in range(count):
                if not self._slots:
                    first = await self._reserve(self.block, self.interval)
                    self._slots.extend(first + i * self.interval for i in range(self.block))
                slot = self._slots.popleft()
        delay = slot - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)


def local_slots(clock: Callable[[], float] = time.time) -> Reserve:
    """Slots reserved within one process (for tests and tools without a database)."""
    next_at = 0.0

    async def reserve(count: int, interval: float) -> float:
        nonlocal next_at
        first = max(next_at, clock())
        next_at = first + count * interval
        return first

    return reserve
