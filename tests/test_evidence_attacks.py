"""The evidence against an insider who can write the database and var/ (issue 11's attacks).

One real run (SQLite file, aiosmtpd refusing some recipients with 550, an objection over
HTTP, a pause) is made once; each test copies it, attacks the copy as an insider with
sqlite3 and a shell would, and runs `herald evidence verify` with the pinned public key
and the witness, and without the witness where the attack needs no off-host copy.
"""

import json
import re
import shutil
import sqlite3

import pytest

from engine.canonical import Frontier, canonical, leaf_hash
from tests.conftest import Herald
from tests.evidence_run import REFUSED, verify


def db(h: Herald) -> sqlite3.Connection:
    """The database as an insider opens it: triggers dropped first."""
    conn = sqlite3.connect(h.project.root / "var" / "herald.db", isolation_level=None)
    conn.execute("DROP TRIGGER event_no_update")
    conn.execute("DROP TRIGGER event_no_delete")
    return conn


def rehead(conn: sqlite3.Connection, campaign: str = "ai-training-notice") -> None:
    """Recompute the head row from the events as they now are (what a careful insider does)."""
    tree = Frontier()
    for (body,) in conn.execute(
        "SELECT body FROM event WHERE campaign_id = ? ORDER BY seq", [campaign]
    ):
        tree.append(leaf_hash(body.encode()))
    conn.execute(
        "UPDATE tree_head SET size = ?, root = ?, frontier = ? WHERE campaign_id = ?",
        [tree.size, tree.root().hex(), tree.dump(), campaign],
    )


def assert_broken(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_the_untouched_run_verifies_with_pinned_key_and_witness(run):
    result = verify(run)
    assert result.exit_code == 0, result.output
    assert "OK ai-training-notice" in result.stdout
    assert "witnessed" in result.stdout
    assert "WARNING" not in result.stderr  # the key is pinned


def test_no_event_holds_an_address_a_name_or_the_reason(run):
    with db(run) as conn:
        text = "\n".join(b for (b,) in conn.execute("SELECT body FROM event"))
        user_ids = [u for (u,) in conn.execute('SELECT id FROM "user"')]
        names = [n for (n,) in conn.execute('SELECT name FROM "user" WHERE name IS NOT NULL')]
    assert '"failed"' in text
    assert "550 5.1.1 <addr:" in text  # refusals are kept, their addresses redacted
    assert '"objected"' in text
    without_message_ids = re.sub(r"<[0-9a-f]+@example\.com>", "", text)
    assert "@" not in without_message_ids
    for needle in [*names, *REFUSED]:
        assert needle not in text, needle
    for user_id in user_ids:
        assert f'"{user_id}"' not in text, user_id


def test_tail_deleted_and_head_moved_back_is_caught_without_witness(run):
    with db(run) as conn:
        conn.execute("DELETE FROM event WHERE seq > (SELECT MAX(seq) - 5 FROM event)")
        rehead(conn)
    for witness in (True, False):
        assert_broken(verify(run, witness), "were removed")


def test_a_deleted_objection_is_caught(run):
    with db(run) as conn:
        conn.execute("DELETE FROM objection")
    assert_broken(verify(run, False), "is missing from the objection table")


def test_a_deleted_objection_with_its_events_is_caught(run):
    with db(run) as conn:
        seq = conn.execute("SELECT seq FROM event WHERE kind = 'objected'").fetchone()[0]
        conn.execute("DELETE FROM objection")
        conn.execute("DELETE FROM event WHERE seq >= ?", [seq])
        rehead(conn)
    assert_broken(verify(run, False), "were removed")


def test_a_forged_sent_signed_by_the_next_send_is_caught(run):
    """The insider appends a well-formed `sent` for a refused recipient and fixes the row;
    the next `herald send` signs it, since it extends the log: the final `failed` before it
    still gives it away."""
    with db(run) as conn:
        delivery, subject = conn.execute(
            "SELECT d.id, s.subject FROM delivery d JOIN subject_key s ON s.user_id = d.user_id "
            "WHERE d.status = 'failed' LIMIT 1"
        ).fetchone()
        size, frontier = conn.execute("SELECT size, frontier FROM tree_head").fetchone()
        tree = Frontier.load(size, frontier)
        data = {"content_sha256": "0" * 64, "message_id": "<forged@example.com>",
                "reply": "250 2.0.0 OK queued as FORGED"}  # fmt: skip
        record = {"v": 1, "campaign": "ai-training-notice", "seq": size + 1, "kind": "sent",
                  "at": "2024-06-01T10:00:00.000Z", "subject": subject, "delivery": delivery,
                  "channel": "email", "data": data}  # fmt: skip
        body = canonical(record)
        tree.append(leaf_hash(body))
        conn.execute(
            "INSERT INTO event (campaign_id, seq, kind, at, subject, delivery_id, channel, body)"
            " VALUES ('ai-training-notice', ?, 'sent', ?, ?, ?, 'email', ?)",
            [size + 1, record["at"], subject, delivery, body.decode()],
        )
        conn.execute(
            "UPDATE tree_head SET size = ?, root = ?, frontier = ?",
            [tree.size, tree.root().hex(), tree.dump()],
        )
        conn.execute(
            "UPDATE delivery SET status = 'sent', message_id = '<forged@example.com>', "
            "content_sha256 = ? WHERE id = ?",
            ["0" * 64, delivery],
        )
    assert run("pause", str(run.project.campaign)).exit_code == 0  # a writer signs it all
    assert_broken(verify(run), f"delivery row id {delivery}", "follows the final `failed`")


def test_checkpoints_rolled_back_with_edits_after_them(run):
    local = run.project.root / "var" / "checkpoints" / "ai-training-notice.jsonl"
    lines = local.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3
    local.write_bytes(lines[0])
    first = json.loads(lines[0])["size"]
    with db(run) as conn:  # a server reply rewritten after the one checkpoint left
        conn.execute(
            "UPDATE event SET body = replace(body, 'queued as', 'kept as') "
            "WHERE kind = 'sent' AND seq > ?",
            [first],
        )
        rehead(conn)
    assert_broken(verify(run), "rolled back")
    # Without the witness, only the age of the unsigned tail can tell.
    assert verify(run, False).exit_code == 0
    assert_broken(verify(run, False, "--max-unsigned-age", "0"), "unsigned since")


def test_checkpoints_deleted(run):
    (run.project.root / "var" / "checkpoints" / "ai-training-notice.jsonl").unlink()
    assert_broken(verify(run), "deleted or rolled back")
    assert_broken(verify(run, False), "no signed checkpoint")


def test_key_replaced_and_everything_resigned(run):
    """The insider deletes the key, the checkpoints and the witness's copy they can reach,
    edits an event, and lets Herald make a new key and sign again."""
    root = run.project.root
    (root / "var" / "signing.pem").unlink()
    shutil.rmtree(root / "var" / "checkpoints")
    with db(run) as conn:
        conn.execute(
            "UPDATE event SET body = replace(body, '\"failed\"', '\"sent\"') WHERE kind = 'failed'"
        )
        conn.execute("UPDATE event SET kind = 'sent' WHERE kind = 'failed'")
        conn.execute("UPDATE delivery SET status = 'sent' WHERE status = 'failed'")
        rehead(conn)
    env = {k: v for k, v in run.env.items() if k != "HERALD_WITNESS"}
    resigned = Herald(run.project, env)
    assert resigned("pause", str(run.project.campaign)).exit_code == 0
    assert_broken(verify(run, False), "not the pinned key")
    assert_broken(verify(run), "not the pinned key")


def test_a_missing_key_is_refused_never_replaced(run):
    (run.project.root / "var" / "signing.pem").unlink()
    result = run("pause", str(run.project.campaign))
    assert result.exit_code == 1
    assert "is missing" in result.stderr
    assert "restore the key file" in result.stderr
    assert not (run.project.root / "var" / "signing.pem").exists()


def test_delivery_rows_edited(run):
    with db(run) as conn:
        conn.execute("UPDATE delivery SET status = 'sent' WHERE status = 'failed'")
    assert_broken(verify(run, False), "status 'sent', the events say 'failed'")


def test_a_possible_duplicate_made_in_the_table_is_caught(run):
    """The report counts possible duplicates from the delivery table; its `sent` event
    says whether the send was one (hiding one: tests/test_delivery.py)."""
    with db(run) as conn:
        conn.execute("UPDATE delivery SET interrupted = 1 WHERE status = 'sent'")
    assert_broken(verify(run, False), "a possible duplicate or not")


def test_a_stored_campaign_file_edited_is_caught(run):
    """The objection pages, the report and later sends read the files stored with the
    campaign; `started` bound each one's SHA-256 in the signed log."""
    path = "templates/pages/object.html"
    with db(run) as conn:
        changed = conn.execute(
            "UPDATE spec_file SET content = CAST(? AS BLOB) WHERE path = ?",
            ("<p>Tell us why, in at least 100 characters.</p>", path),
        ).rowcount
    assert changed == 1
    assert_broken(verify(run, False), f"stored campaign file {path}: differs")


def test_head_row_deleted(run):
    with db(run) as conn:
        conn.execute("DELETE FROM tree_head")
        conn.execute("DELETE FROM campaign")
    assert_broken(verify(run, False), "BROKEN ai-training-notice", "no head row")


@pytest.mark.parametrize("edit", ["change", "swap", "delete"])
def test_edits_swaps_and_deletions_in_the_middle(run, edit):
    with db(run) as conn:
        middle = conn.execute("SELECT MAX(seq) / 2 FROM event").fetchone()[0]
        if edit == "change":
            conn.execute(
                'UPDATE event SET body = replace(body, \'"locale":"de"\', \'"locale":"en"\')'
                " WHERE seq BETWEEN ? AND ?",
                [middle, middle + 40],
            )
        elif edit == "swap":
            conn.execute("UPDATE event SET seq = -1 WHERE seq = ?", [middle])
            conn.execute("UPDATE event SET seq = ? WHERE seq = ?", [middle, middle + 1])
            conn.execute("UPDATE event SET seq = ? WHERE seq = -1", [middle + 1])
        else:
            conn.execute("DELETE FROM event WHERE seq = ?", [middle])
        rehead(conn)
    result = verify(run, False)
    assert result.exit_code == 1, result.output
    assert any(
        needle in result.stderr
        for needle in ("an event up to there was changed", "differs from its column", "is missing")
    ), result.stderr


def test_triggers_refuse_update_and_delete(run):
    conn = sqlite3.connect(run.project.root / "var" / "herald.db", isolation_level=None)
    for statement in ("UPDATE event SET kind = 'x'", "DELETE FROM event"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


def _both(run: Herald) -> tuple[bool, bool]:
    """(herald's verdict, the independent verifier's) on the run as it is now."""
    from tests.independent_verifier import verify as independent

    root = run.project.root
    ours = verify(run, False).exit_code == 0
    theirs = not independent(
        root / "var" / "herald.db", root / "var" / "checkpoints", (root / "pinned.pem").read_bytes()
    )
    return ours, theirs


def test_independent_verifier_agrees_on_the_untouched_run(run):
    assert _both(run) == (True, True)


@pytest.mark.parametrize("attack", ["middle", "tail", "forged-status", "resigned"])
def test_independent_verifier_agrees_on_attacks(run, attack):
    with db(run) as conn:
        if attack == "middle":
            conn.execute("UPDATE event SET body = replace(body, 'ai-training', 'ai-trainin') "
                         "WHERE seq = 1")  # fmt: skip
        elif attack == "tail":
            conn.execute("DELETE FROM event WHERE seq > (SELECT MAX(seq) - 2 FROM event)")
        elif attack == "forged-status":
            seq = conn.execute("SELECT MAX(seq) FROM event WHERE kind = 'failed'").fetchone()[0]
            conn.execute(
                'UPDATE event SET body = replace(body, \'"kind":"failed"\', \'"kind":"sent"\')'
                ", kind = 'sent' WHERE seq = ?",
                [seq],
            )
        rehead(conn)
    if attack == "resigned":
        (run.project.root / "var" / "signing.pem").unlink()
        shutil.rmtree(run.project.root / "var" / "checkpoints")
        env = {k: v for k, v in run.env.items() if k != "HERALD_WITNESS"}
        assert Herald(run.project, env)("pause", str(run.project.campaign)).exit_code == 0
    assert _both(run) == (False, False)


def test_a_log_with_a_hole_in_its_unsigned_tail_is_still_exported_and_fails(run, tmp_path):
    """Export signs what is unsigned first; events that do not extend the signed
    checkpoints (here one of two unsigned events removed) are signed by no one. The pack
    is made all the same, for the auditor, and both its verifiers name the hole."""
    import subprocess
    import sys
    import time

    from engine.store import campaigns as campaign_store

    for paused in (True, False):  # two events no checkpoint covers yet
        campaign_store.set_paused(run.database(), "ai-training-notice", paused, time.time(), "t")
    with db(run) as conn:
        (last,) = conn.execute("SELECT max(seq) FROM event").fetchone()
        conn.execute("DELETE FROM event WHERE seq = ?", [last - 1])
    pack = tmp_path / "pack"
    result = run("evidence", "export", "ai-training-notice", "--out", str(pack))
    assert result.exit_code == 0, result.output
    hole = f"campaign ai-training-notice: event seq {last - 1} is missing; nothing signed"
    assert f"warning: nothing more was signed: {hole}" in result.stderr
    theirs = subprocess.run(
        [sys.executable, str(pack / "verify.py"), str(pack)], capture_output=True, text=True
    )
    assert theirs.returncode == 1, theirs.stdout
    assert "BROKEN" in theirs.stderr
    assert run("evidence", "verify", str(pack)).exit_code == 1
