"""Shared fixtures: a scratch copy of the shipped project that a test may break."""

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tests.evidence_run"]  # the `base` and `run` fixtures of the evidence tests

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = "ai-training-notice"
SEND_WINDOW = '  send_window: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}\n'


@dataclass
class ScratchProject:
    root: Path

    @property
    def campaign(self) -> Path:
        return self.root / "campaigns" / f"{SHIPPED}.yaml"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def edit(self, relative: str, old: str, new: str, count: int = 1) -> None:
        """Replace `old` by `new` in a project file; fails if `old` is not there."""
        path = self.root / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    def line_of(self, relative: str, needle: str) -> int:
        lines = (self.root / relative).read_text(encoding="utf-8").splitlines()
        return next(i for i, line in enumerate(lines, 1) if needle in line)


def copy_project(root: Path) -> ScratchProject:
    for folder in ("campaigns", "templates", "locales"):
        shutil.copytree(ROOT / folder, root / folder)
    return ScratchProject(root)


@pytest.fixture
def project(tmp_path: Path) -> ScratchProject:
    return copy_project(tmp_path)


@dataclass
class Herald:
    """Runs `herald` commands in a scratch project with its own database and key."""

    project: ScratchProject
    env: dict[str, str]

    def __call__(self, *args: str, smtp: str | None = None):
        from typer.testing import CliRunner

        from engine.cli import app

        env = {**self.env, "HERALD_SMTP_URL": smtp or ""}
        return CliRunner().invoke(app, list(args), env=env)

    @property
    def db_url(self) -> str:
        return self.env["HERALD_DB"]

    def database(self):
        from engine.store import open_database

        return open_database(self.db_url)

    def set_campaign(self, old: str, new: str) -> None:
        self.project.edit("campaigns/ai-training-notice.yaml", old, new)


@pytest.fixture
def database_url(project: ScratchProject) -> Iterator[str]:
    """A fresh database: a SQLite file, or with HERALD_TEST_POSTGRES (a server URL) a new
    PostgreSQL database, dropped afterwards."""
    server = os.environ.get("HERALD_TEST_POSTGRES")
    if not server:
        yield f"sqlite:///{project.root / 'var' / 'herald.db'}"
        return
    from sqlalchemy import create_engine, text

    name = f"herald_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def scratch_herald(project: ScratchProject, database_url: str | None = None) -> Herald:
    """`herald` in `project`, with its own database (default: a SQLite file in var/) and
    key, and a campaign that waits for no rate limit, backoff or office hours
    (tests/test_schedule.py covers send windows)."""
    env = {
        "HERALD_DB": database_url or f"sqlite:///{project.root / 'var' / 'herald.db'}",
        "HERALD_VAR": str(project.root / "var"),
        "HERALD_SECRET": "test-secret-0123456789abcdef",
    }
    h = Herald(project, env)
    h.set_campaign(SEND_WINDOW, "")
    h.set_campaign("rate_per_second: 200", "rate_per_second: 100000")
    h.set_campaign("retry_base_seconds: 60", "retry_base_seconds: 0.05")
    return h


@pytest.fixture
def herald(project: ScratchProject, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Herald:
    monkeypatch.chdir(project.root)
    return scratch_herald(project, database_url)


@pytest.fixture
def smtp_server():
    from tests.smtp import serve

    yield from serve()
