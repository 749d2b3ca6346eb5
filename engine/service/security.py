"""What keeps the service's pages and API safe: headers, a token-free access log, a per
client limit on posts, and API keys. Pure but for reading the key file.
"""

import hmac
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.config import require_private
from engine.errors import ConfigError
from engine.logs import fields

access_log = logging.getLogger("herald.access")

# Nothing from another origin, no script at all, forms only to ourselves, never framed.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# /docs is Swagger UI, which FastAPI loads from a CDN: the one page that may.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000"),  # browsers heed it over HTTPS only
    (b"permissions-policy", b"interest-cohort=()"),
]
_TOKEN_PATH = re.compile(r"^/object/[^/]+")


def redact(path: str) -> str:
    """A path fit for a log: the token of /object/{token} replaced."""
    return _TOKEN_PATH.sub("/object/[token]", path)


class Guard:
    """ASGI middleware: security headers on every response, no-store on token pages and
    the API, and one access log line per request with the token left out.

    (Uvicorn's own access log is switched off: it would print the token.)"""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        started, status = self.clock(), 500
        docs = path == "/docs" or path.startswith("/docs/")
        private = path.startswith(("/object/", "/api/"))

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"cache-control", b"content-security-policy")
                ]
                headers += _COMMON
                headers.append((b"content-security-policy", (DOCS_CSP if docs else CSP).encode()))
                if private:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                "request",
                extra=fields(
                    client=client[0],
                    method=scope["method"],
                    path=redact(path),
                    status=status,
                    ms=round((self.clock() - started) * 1000, 1),
                ),
            )


class PostLimit:
    """At most `per_minute` posts per client address in any 60 s (a sliding window).

    In memory, per process: run one `herald serve` per address, or put the limit in the
    proxy in front."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client: str) -> float | None:
        """None if this post may go ahead; else the seconds to wait."""
        now = self.clock()
        if len(self._seen) > 10_000:  # forget clients that have gone quiet
            self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - 60}
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - 60:
            times.popleft()
        if len(times) >= self.per_minute:
            return max(1.0, times[0] + 60 - now)
        times.append(now)
        return None


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: str
    campaigns: frozenset[str] | None  # None: every campaign


class ApiKeys:
    """Keys of the apps that read the in-app feed: HERALD_API_KEY (every campaign), and
    a YAML key file (0600) naming each app's key and, optionally, its campaigns:

        mobile-app:
          key: "at least 32 random characters"
          campaigns: [ai-training-notice]
    """

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @classmethod
    def load(cls, environ_key: str | None, path: Path) -> "ApiKeys":
        keys = []
        if environ_key:
            if len(environ_key) < 32:
                raise ConfigError("HERALD_API_KEY must be at least 32 characters long")
            keys.append(ApiKey("HERALD_API_KEY", environ_key, None))
        if path.exists():
            keys += _read_key_file(path)
        return cls(keys)

    def find(self, presented: str | None) -> ApiKey | None:
        """The key presented, compared in constant time with every configured key."""
        found = None
        for key in self.keys:
            if hmac.compare_digest((presented or "").encode(), key.secret.encode()):
                found = key
        return found


def _read_key_file(path: Path) -> list[ApiKey]:
    require_private(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a YAML mapping of app names to keys: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of app names to {{key, campaigns}}")
    keys = []
    for name, entry in data.items():
        entry = entry if isinstance(entry, Mapping) else {}
        secret, campaigns = entry.get("key"), entry.get("campaigns")
        if not isinstance(secret, str) or len(secret) < 32:
            raise ConfigError(f"{path}: {name}: 'key' must be a string of 32 characters or more")
        unknown = set(entry) - {"key", "campaigns"}
        if unknown:
            raise ConfigError(f"{path}: {name}: unknown key(s) {sorted(unknown)}")
        if campaigns is not None and not (
            isinstance(campaigns, list) and all(isinstance(c, str) for c in campaigns)
        ):
            raise ConfigError(f"{path}: {name}: 'campaigns' must be a list of campaign ids")
        keys.append(ApiKey(str(name), secret, None if campaigns is None else frozenset(campaigns)))
    return keys
