"""A `herald send` killed with SIGKILL mid-run loses nothing when run again."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.smtp import Mailbox, serve

HERALD = str(Path(sys.executable).parent / "herald")


def _send(herald, server, *args: str, **popen) -> subprocess.Popen[str]:
    """`herald send` as a real process, against `server`."""
    env = {**os.environ, **herald.env, "HERALD_SMTP_URL": server.url}
    command = [HERALD, "send", "ai-training-notice", *args]
    return subprocess.Popen(command, cwd=herald.project.root, env=env, text=True, **popen)


def test_killed_send_resumes_with_every_delivery_final_and_none_lost(herald):
    assert herald("users", "generate", "--count", "1200").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    mailbox = Mailbox(delay_s=0.004)
    for server in serve(mailbox):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        first = _send(herald, server, "--concurrency", "4", **quiet)
        server.wait_for(200, timeout=60)
        first.kill()
        first.wait(10)
        assert first.returncode == -9
        again = _send(herald, server, "--concurrency", "4", stderr=subprocess.PIPE)
        _, errors = again.communicate(timeout=120)
        assert again.returncode == 0, errors
    with herald.database().connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM delivery GROUP BY status")).all()
        )
        email_ids = {
            r[0]
            for r in conn.execute(text("SELECT message_id FROM delivery WHERE channel = 'email'"))
        }
        # an in-app delivery is its row, written with its outcome: never a duplicate
        inapp_interrupted = conn.execute(
            text("SELECT count(*) FROM delivery WHERE channel = 'inapp' AND interrupted > 0")
        ).scalar_one()
    assert set(statuses) == {"sent", "delivered"}, statuses
    assert inapp_interrupted == 0
    received = mailbox.message_ids()
    assert set(received) == email_ids  # every email arrived, under its own Message-ID
    duplicates = len(received) - len(set(received))
    report = json.loads(herald("report", "ai-training-notice", "--format", "json").stdout)
    assert report["pending"] == 0
    assert report["coverage_equation_holds"]
    assert report["possible_duplicates"] >= duplicates  # each resend is counted


def test_sigint_stops_cleanly_and_leaves_nothing_claimed(herald):
    assert herald("users", "generate", "--count", "600").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    mailbox = Mailbox(delay_s=0.01)
    for server in serve(mailbox):
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        send = _send(herald, server, "--concurrency", "2", **pipes)
        server.wait_for(50, timeout=60)
        send.send_signal(signal.SIGINT)
        out, errors = send.communicate(timeout=30)
    assert send.returncode == 0, errors
    assert "stopping" in errors
    assert "remaining:" in out
    with herald.database().connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM delivery GROUP BY status")).all()
        )
    assert "sending" not in statuses
    assert statuses["sent"] == len(mailbox.messages)  # every accepted mail is recorded


# SQLite's own words when the disk is full (SQLITE_FULL), raised by the event log once
# 100 emails are recorded: the recording of the next batch fails as on a full disk.
_FULL = """
CREATE TRIGGER disk_full BEFORE INSERT ON event
WHEN NEW.kind = 'sent' AND (SELECT count(*) FROM event WHERE kind = 'sent') >= 100
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
"""


def test_emails_the_server_took_but_a_full_disk_kept_from_the_log_are_flagged_on_resend(
    herald,
):
    """The server accepted them; writing their outcome failed. The run stops and hands
    them back as interrupted (not as never tried), so their resend is counted as a possible
    duplicate in the report and in the signed log, and verify agrees."""
    if not herald.env["HERALD_DB"].startswith("sqlite"):
        pytest.skip("the full disk is a SQLite trigger here; the recording path is shared")
    assert herald("users", "generate", "--count", "600").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    with herald.database().begin() as conn:
        conn.execute(text(_FULL))
    mailbox = Mailbox()
    for server in serve(mailbox):
        first = _send(herald, server, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, errors = first.communicate(timeout=120)
        assert first.returncode != 0
        assert "database or disk is full" in errors
        with herald.database().begin() as conn:
            conn.execute(text("DROP TRIGGER disk_full"))  # space freed
        again = _send(herald, server, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, errors = again.communicate(timeout=120)
        assert again.returncode == 0, errors
    received = Counter(mailbox.message_ids())
    twice = {m for m, n in received.items() if n > 1}
    assert twice, "no email was taken by the server and then lost by the log"
    with herald.database().connect() as conn:
        rows = conn.execute(
            text("SELECT message_id, status, interrupted FROM delivery WHERE channel = 'email'")
        ).all()
    assert {r[1] for r in rows} == {"sent"}
    assert {r[0] for r in rows if r[2]} >= twice  # each resend is known for what it is
    report = json.loads(herald("report", "ai-training-notice", "--format", "json").stdout)
    assert report["possible_duplicates"] >= len(twice)
    verify = herald("evidence", "verify", "--db")
    assert verify.exit_code == 0, verify.output


def test_a_database_that_cannot_grow_is_one_line_naming_it_not_a_traceback(herald):
    """A real refusal by the kernel: the database file may not grow past a limit (as on a
    full disk; SQLite says "disk I/O error"). The operator reads what and where."""
    if not herald.env["HERALD_DB"].startswith("sqlite"):
        pytest.skip("a limit on the size of the database's file: SQLite's")
    import resource

    assert herald("users", "generate", "--count", "300").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    database = herald.env["HERALD_DB"].removeprefix("sqlite:///")
    limit = max(os.path.getsize(p) for p in (database, database + "-wal") if os.path.exists(p))

    def no_room() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit + 200_000, limit + 200_000))

    for server in serve(Mailbox()):
        full = _send(herald, server, preexec_fn=no_room, stderr=subprocess.PIPE)
        _, errors = full.communicate(timeout=120)
    assert full.returncode == 1
    assert "herald: the database: " in errors
    assert "Traceback" not in errors
