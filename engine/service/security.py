"""What keeps the service's pages and API safe: headers, an access log that names routes
(never tokens), and API keys. Pure but for reading the key file.
"""

import hmac
import logging
import time
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
# /docs (with --docs) is Swagger UI, served from our own origin: scripts and styles from
# files, none inline; `data:` images are the icons in its stylesheet.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000"),  # browsers heed it over HTTPS only
    (b"permissions-policy", b"interest-cohort=()"),
]


def route_of(scope: Scope) -> str:
    """What the access log names: the route's template (/object/{token}), never the path
    the client sent, which may hold a token or characters meant to forge log lines."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else "(no route)"


class Guard:
    """ASGI middleware: security headers on every response, no-store on token pages and
    the API, and one access log line per request naming its route, not its path.

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
                    route=route_of(scope),
                    status=status,
                    ms=round((self.clock() - started) * 1000, 1),
                ),
            )


FEED, FEED_SEEN = "feed", "feed+seen"


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: str
    campaigns: frozenset[str] | None  # None: every campaign
    access: str = FEED  # FEED reads feeds; FEED_SEEN may also record `seen`

    @property
    def may_mark_seen(self) -> bool:
        return self.access == FEED_SEEN


class ApiKeys:
    """Keys of the servers that read the in-app feed for their apps. A key reads any
    user's feed (with their objection links), so keys are for server-to-server use only,
    never shipped inside an app. HERALD_API_KEY reads every campaign and may record
    `seen`; a YAML key file (0600) names each further key, optionally its campaigns, and
    its access, `feed` (read only, the default) or `feed+seen`:

        notifications-backend:
          key: "at least 32 random characters"
          campaigns: [ai-training-notice]
          access: feed+seen
    """

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @classmethod
    def load(cls, environ_key: str | None, path: Path) -> "ApiKeys":
        keys = []
        if environ_key:
            if len(environ_key) < 32:
                raise ConfigError("HERALD_API_KEY must be at least 32 characters long")
            keys.append(ApiKey("HERALD_API_KEY", environ_key, None, FEED_SEEN))
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
        access = entry.get("access", FEED)
        if not isinstance(secret, str) or len(secret) < 32:
            raise ConfigError(f"{path}: {name}: 'key' must be a string of 32 characters or more")
        unknown = set(entry) - {"key", "campaigns", "access"}
        if unknown:
            raise ConfigError(f"{path}: {name}: unknown key(s) {sorted(unknown)}")
        if campaigns is not None and not (
            isinstance(campaigns, list) and all(isinstance(c, str) for c in campaigns)
        ):
            raise ConfigError(f"{path}: {name}: 'campaigns' must be a list of campaign ids")
        if access not in (FEED, FEED_SEEN):
            raise ConfigError(f"{path}: {name}: 'access' must be {FEED} or {FEED_SEEN}")
        scope = None if campaigns is None else frozenset(campaigns)
        keys.append(ApiKey(str(name), secret, scope, access))
    return keys
