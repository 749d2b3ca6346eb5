"""A `herald send` killed with SIGKILL mid-run loses nothing when run again."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

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
    assert set(statuses) == {"sent", "delivered"}, statuses
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
