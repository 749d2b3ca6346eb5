"""A server on a free loopback port, running its own event loop in a thread, for tests.

Subclasses say how to start (`_start`, returning the asyncio server); this class owns the
thread, the port, the bounded waits and a clean stop, so each peer (SMTP server, bounce
receiver, STARTTLS-stripping relay) writes only what makes it different.
"""

import asyncio
import threading
from typing import Any, Self


class LoopServer:
    name = "server"

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: Any = None
        self.port = 0

    async def _start(self) -> Any:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await self._start()
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(5), f"{self.name} did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
