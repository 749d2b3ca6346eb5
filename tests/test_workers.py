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
