"""`herald send --workers N` as a real command: the extra workers are forked (no other
thread runs in the command) after the command's own connections are closed."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from tests.conftest import ROOT
from tests.smtp import Mailbox, serve


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


def _count(herald, sql: str) -> int:
    with herald.database().connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


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
    # The command tells what the whole run did, its workers' part included
    inapp = _count(herald, "SELECT count(*) FROM delivery WHERE channel = 'inapp'")
    assert f"ai-training-notice: {inapp} delivered, {len(ids)} sent in " in result.stdout
    # After the fork the command used its database again: it signed what the workers
    # wrote, and the signed log verifies.
    verify = _command(herald, "evidence", "verify", "--db", smtp=smtp_server.url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_renderers_warmed_before_the_fork_pack_what_new_ones_pack(herald):
    """The send warms the campaign's renderers on one due notice per channel, locale,
    country and named-or-not (deliveries.samples) before forking its workers; what they
    pack with those is byte for byte what they packed preparing everything themselves."""
    from engine.authoring.campaigns import load_campaign
    from engine.delivery.packing import Packer, Renderers
    from engine.delivery.tokens import Keys
    from engine.store import deliveries

    assert herald("users", "generate", "--count", "300").exit_code == 0
    assert herald("users", "import", str(ROOT / "tests" / "users.csv")).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    engine = herald.database()
    loaded = load_campaign(herald.project.campaign)
    samples = deliveries.samples(engine, loaded.campaign.id)
    with engine.connect() as conn:
        groups = conn.execute(
            text(
                "SELECT DISTINCT d.channel, d.locale, d.country, u.name IS NULL FROM delivery d "
                "JOIN \"user\" u ON u.id = d.user_id WHERE d.message = 'notice'"
            )
        ).all()
    keyed = {(r["channel"], r["locale"], r["country"], u["name"] is None) for r, u in samples}
    assert len(samples) == len(groups) == len(keyed) > 20
    assert keyed == {(c, loc, country, bool(unnamed)) for c, loc, country, unnamed in groups}

    warmed = Renderers.of(loaded)
    assert warmed.warm(loaded, samples) == sum(
        1 for r, u in samples if r["channel"] == "inapp" or u["email"]
    )
    keys, clock = Keys(herald.env["HERALD_SECRET"].encode()), lambda: 1.8e9
    rows = deliveries.claim(engine, loaded.campaign.id, "test", clock(), 60, 10_000)
    users = deliveries.users_by_id(engine, [r["user_id"] for r in rows])
    assert len(rows) == 2 * len({r["user_id"] for r in rows}) > 300
    fresh, reused = Packer(loaded, keys, clock), Packer(loaded, keys, clock, renderers=warmed)
    for row in rows:
        assert reused.pack(row, users.get(row["user_id"])) == fresh.pack(
            row, users.get(row["user_id"])
        )


def test_a_killed_worker_is_named_and_the_command_sends_what_it_held(herald):
    """SIGKILL one of two workers mid-run: the command takes back its claims (a killed
    worker is a zombie until joined: dead all the same), sends them, and exits 1 naming
    the worker; what it may have sent before dying is flagged, never silently resent."""
    assert herald("users", "generate", "--count", "1000").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    emails = _count(herald, "SELECT count(*) FROM delivery WHERE channel = 'email'")
    for server in serve(Mailbox(delay_s=0.05)):  # ~40 emails a second over 2 + 2 sessions, at first
        command = _send_with_a_worker(herald, server, subprocess.PIPE)
        try:
            worker = _busy_worker(herald, command.pid)
            os.kill(worker, signal.SIGKILL)
            server.mailbox.delay_s = 0  # the rest at full speed
            out, errors = command.communicate(timeout=120)
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
        received = server.mailbox.message_ids()
    assert command.returncode == 1, out + errors
    assert "worker 2 was killed (SIGKILL) before the end of its run" in errors
    assert "every delivery is final" in out
    assert "took back" in errors  # the command's log: the killed worker's claims
    with herald.database().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, lease_owner, message_id, interrupted FROM delivery "
                "WHERE channel = 'email'"
            )
        ).all()
    assert len(rows) == emails
    assert {r[0] for r in rows} == {"sent"}
    assert {r[1] for r in rows} == {None}
    assert set(received) == {r[2] for r in rows}  # everyone got theirs
    twice = {m for m, n in Counter(received).items() if n > 1}
    assert twice <= {r[2] for r in rows if r[3]}  # a resend only of what was in flight


def test_workers_stop_with_a_killed_command_and_sign_what_they_wrote(herald):
    """SIGKILL the command of `send --workers 2`: its worker used to send the whole
    campaign on, unseen and unsigned. Now it stops as on SIGTERM, signs, and the next
    send finishes the campaign."""
    assert herald("users", "generate", "--count", "1000").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    for server in serve(Mailbox(delay_s=0.05)):
        command = _send_with_a_worker(herald, server, subprocess.DEVNULL)
        try:
            worker = _busy_worker(herald, command.pid)
            command.kill()
            command.wait(10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(worker):
                time.sleep(0.05)
            assert not _alive(worker), "the worker sends on without its command"
            arrived = len(server.mailbox.messages)
            time.sleep(0.5)
            assert len(server.mailbox.messages) == arrived
            unsigned = herald("evidence", "verify", "--db", "--max-unsigned-age", "0")
            assert unsigned.exit_code == 0, unsigned.output
            server.mailbox.delay_s = 0
            again = herald("send", "ai-training-notice", "--max-wait", "5", smtp=server.url)
            assert again.exit_code == 0, again.output
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
    with herald.database().connect() as conn:
        statuses = {s for (s,) in conn.execute(text("SELECT DISTINCT status FROM delivery"))}
    assert statuses == {"sent", "delivered"}


def _send_with_a_worker(herald, server, output: int) -> subprocess.Popen[str]:
    """`herald send --workers 2 --concurrency 2` as a real process, against `server`."""
    env = {**os.environ, **herald.env, "PYTHONPATH": str(ROOT), "HERALD_SMTP_URL": server.url}
    return subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import main; main()"]
        + ["send", "ai-training-notice", "--workers", "2", "--concurrency", "2"],
        cwd=herald.project.root,
        env=env,
        stdout=output,
        stderr=output,
        text=True,
    )


def _busy_worker(herald, command: int) -> int:
    """The command's worker, once it holds claimed deliveries (bounded wait)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for worker in _children(command):
            with herald.database().connect() as conn:
                held = conn.execute(
                    text(
                        "SELECT count(*) FROM delivery "
                        "WHERE status = 'sending' AND lease_owner LIKE :o"
                    ),
                    {"o": f"%:{worker}"},
                ).scalar_one()
            if held:
                return worker
        time.sleep(0.02)
    raise AssertionError("the worker never held a claim")


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux: /proc/PID/task/*/children)."""
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _alive(pid: int) -> bool:
    """Running (a zombie, reaped by no one yet, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fp:
            stat = fp.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"
