"""How the command line starts and presents itself: imports, help, wrapping."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import scratch_herald

HERALD = str(Path(sys.executable).parent / "herald")
HEAVY = ("sqlalchemy", "sqlmodel", "jinja2", "babel", "pydantic", "fastapi", "uvicorn",
         "aiosmtplib", "apscheduler", "cryptography")  # fmt: skip


@pytest.mark.parametrize("args", [["--help"], ["validate", "--help"], ["report", "--help"]])
def test_help_starts_without_the_heavy_libraries(args):
    script = (
        "import sys\n"
        "from engine.cli import main\n"
        f"sys.argv = ['herald', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


def _commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_help_page_renders_names_not_types():
    runner = CliRunner()
    commands = list(_commands(typer.main.get_group(app)))
    assert ("evidence", "verify") in commands
    assert ("report",) in commands
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (command, result.output)
        for wrong in ("<bool>", "<str>", "<int>", "<float>", "<path>"):
            assert wrong not in result.output, (command, result.output)
        assert not re.search(r"\{[a-z_]+\}", result.output), (command, result.output)
    report = runner.invoke(app, ["report", "--help"], env={"COLUMNS": "120"}).output
    assert "Usage: herald report [OPTIONS] CAMPAIGN" in report
    assert "[table|json|html]" in report


def _preview_words(columns: int) -> str:
    result = subprocess.run(
        [HERALD, "preview", "ai-training-notice", "--channel", "email", "--locale", "de"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "COLUMNS": str(columns), "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    inside = [line.strip("│ ") for line in result.stdout.splitlines() if line.startswith("│")]
    return "".join("".join(inside).split())


def test_preview_wraps_paragraphs_at_the_terminal_width():
    wide, narrow = _preview_words(400), _preview_words(60)
    assert "Widerspruchsrecht" in wide
    assert narrow == wide


def test_plan_and_send_on_sqlite_leave_the_postgresql_dialect_unimported(project, smtp_server):
    """Its import (with asyncpg's and psycopg's parts) took ~17 ms of every command's
    start; store.upsert_into imports the dialect a database uses, when it first writes."""
    script = (
        "import sys\n"
        "from engine.cli import main\n"
        "for args in (['users', 'generate', '--count', '20'], ['plan', 'ai-training-notice'],\n"
        "             ['send', 'ai-training-notice', '--workers', '2']):\n"
        "    sys.argv = ['herald', *args]\n"
        "    try:\n        main()\n"
        "    except SystemExit as exc:\n        assert not exc.code, exc\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.')),\n"
        "      file=sys.stderr)\n"
    )
    herald = scratch_herald(project)  # SQLite, whatever HERALD_TEST_POSTGRES says
    env = {**os.environ, **herald.env, "HERALD_SMTP_URL": smtp_server.url}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stderr.strip().splitlines()[-1]
    assert "'sqlalchemy.dialects.sqlite'" in loaded, result.stderr
    assert "postgresql" not in loaded, result.stderr
