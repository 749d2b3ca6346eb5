"""`herald serve`'s app on a real loopback port, for tests that speak HTTP to it."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from engine.authoring.campaigns import Project
from engine.config import Settings
from engine.delivery.tokens import Keys
from engine.service.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, forwarded_allow_ips: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` with uvicorn in a thread on a port the OS picks; yields its base URL.
    Proxy headers are believed from `forwarded_allow_ips`, as `herald serve` does."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the service stopped while starting"
        assert time.monotonic() < deadline, "the service did not start within 10 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Served:
    """A running service over a planned and sent campaign, and ways to look inside."""

    url: str
    http: httpx.Client
    herald: Any  # tests.conftest.Herald
    keys: Keys

    def token(self, user_id: str, campaign: str = "ai-training-notice") -> str:
        return self.keys.token(self.keys.token_id(campaign, user_id))

    def user(self, **where: str) -> str:
        """The id of the first user whose email delivery matches (e.g. locale="de")."""
        condition = " AND ".join(f"d.{k} = :{k}" for k in where) or "1 = 1"
        return str(
            self.scalar(
                f"SELECT d.user_id FROM delivery d WHERE d.channel = 'email' AND {condition} "
                "ORDER BY d.user_id LIMIT 1",
                **where,
            )
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        engine = self.herald.database()
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def count(self, table: str, where: str = "1 = 1", **params: Any) -> int:
        return int(self.scalar(f"SELECT COUNT(*) FROM {table} WHERE {where}", **params))


@contextmanager
def serve_campaign(
    herald: Any, forwarded_allow_ips: str = "127.0.0.1", **options: Any
) -> Iterator[Served]:
    """`herald serve`'s app over the herald fixture's project and database."""
    settings = Settings.from_env(herald.env)
    engine = herald.database()
    app = create_app(settings, engine, Project(herald.project.root), **options)
    try:
        with (
            serving(app, forwarded_allow_ips) as url,
            httpx.Client(base_url=url, timeout=10) as http,
        ):
            yield Served(url, http, herald, Keys(settings.secret))
    finally:
        engine.dispose()
