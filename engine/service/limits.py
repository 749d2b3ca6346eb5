"""Limits that keep the service up under attack: on request bodies, and on failed token
lookups per client. In memory; no I/O of their own.

A genuine token is never limited: only failures count, so no one can stop a real user
from objecting by sending junk from the same network.
"""

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # bytes; the objection form and the API need a few hundred


class BodyTooLargeError(Exception):
    """Raised into the app when a body grows past the limit (the 413 is sent already)."""


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by Content-Length before the app
    runs, or while the body streams in; the app never holds more than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(send)
            return
        received, started, refused = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started and not refused:
                        refused = True
                        await _too_large(send)
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # whatever the app answers to the interruption: ours went first
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLargeError:
            if not refused:
                raise


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send) -> None:
    body = b'{"detail":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_key(host: str) -> str:
    """Whose bucket a request counts in: the IPv4 address, or the IPv6 /64 (one host
    is given a whole /64, so a single address would be no limit at all)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureLimit:
    """At most `per_minute` failures per client in any 60 s (a sliding window).

    Thread-safe (routes run on a thread pool) and bounded: it remembers the
    `max_clients` most recently failing clients and forgets the least recent first.
    In memory, per process: run one `herald serve` per address, or limit in the proxy.
    """

    def __init__(
        self,
        per_minute: int,
        max_clients: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute, self.max_clients, self.clock = per_minute, max_clients, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def blocked(self, client: str) -> float | None:
        """None if `client` may try again; else the seconds to wait."""
        now = self.clock()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return None
            while times and times[0] <= now - 60:
                times.popleft()
            if len(times) < self.per_minute:
                return None
            return max(1.0, times[0] + 60 - now)

    def fail(self, client: str) -> None:
        """Count one failure of `client`."""
        now = self.clock()
        with self._lock:
            times = self._failures.pop(client, None)
            if times is None:
                times = deque(maxlen=self.per_minute)
            times.append(now)
            self._failures[client] = times  # now the most recent
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
