"""`herald send --workers N` as a real command: the extra workers are forked (no other
thread runs in the command) after the command's own connections are closed."""

import os
import subprocess
import sys

from sqlalchemy import text

from tests.conftest import ROOT


def _command(herald, *args: str, smtp: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **herald.env, "HERALD_SMTP_URL": smtp, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        cwd=herald.project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_forked_workers_share_the_queue_and_the_command_keeps_its_database(herald, smtp_server):
    assert herald("users", "generate", "--count", "300").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    result = _command(herald, "send", "ai-training-notice", "--workers", "3", smtp=smtp_server.url)
    assert result.returncode == 0, result.stderr
    ids = smtp_server.mailbox.message_ids()
    assert len(ids) == len(set(ids))  # no message twice
    with herald.database().connect() as conn:
        rows = conn.execute(
            text("SELECT status, lease_owner FROM delivery WHERE channel = 'email'")
        ).all()
    assert len(ids) == len(rows)
    assert {r[0] for r in rows} == {"sent"}
    assert {r[1] for r in rows} == {None}
    # After the fork the command used its database again: it signed what the workers
    # wrote, and the signed log verifies.
    verify = _command(herald, "evidence", "verify", "--db", smtp=smtp_server.url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
