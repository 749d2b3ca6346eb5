"""Every writer signs, with a key that is never silently replaced (SQLite and PostgreSQL)."""

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.canonical import canonical
from engine.delivery.tokens import Keys
from engine.evidence.checkpoints import Checkpoint, Signer, read_checkpoints
from tests.service import free_port

USERS = """id,email,name,country,locale,timezone
de-1,anna@example.com,Anna Müller,DE,de,Europe/Berlin
fr-1,luc@example.com,Luc Dupont,FR,fr,Europe/Paris
"""
CAMPAIGN = "ai-training-notice"


@pytest.fixture
def launched(herald, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text(USERS, encoding="utf-8")
    assert herald("users", "import", str(users)).exit_code == 0
    assert herald("plan", CAMPAIGN).exit_code == 0
    assert herald("send", CAMPAIGN, "--max-wait", "1").exit_code == 0
    return herald


def checkpoints(herald) -> list[Checkpoint]:
    return list(read_checkpoints(herald.project.root / "var" / "checkpoints" / f"{CAMPAIGN}.jsonl"))


def test_plan_and_send_sign_what_they_wrote_and_verify_passes(launched):
    planned, cp = checkpoints(launched)  # one by plan, one by send
    with launched.database().connect() as conn:
        assert conn.execute(text("SELECT MAX(seq) FROM event")).scalar() == cp.size
    result = launched("evidence", "verify", "--db")
    assert result.exit_code == 0, result.output
    assert "WARNING: trusting the local key" in result.stderr  # nothing pinned
    assert f"{cp.size} events (format v1)" in result.stdout


def test_events_are_append_only_in_the_database(launched):
    with launched.database().connect() as conn:
        for statement in ("UPDATE event SET kind = 'x'", "DELETE FROM event"):
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(statement))
            conn.rollback()


def test_pause_and_resume_sign(launched):
    before = checkpoints(launched)[-1].size
    assert launched("pause", CAMPAIGN).exit_code == 0
    assert checkpoints(launched)[-1].size == before + 1
    assert launched("resume", CAMPAIGN).exit_code == 0
    assert checkpoints(launched)[-1].size == before + 2


def test_a_checkpoint_a_crash_cut_short_is_no_checkpoint_and_the_next_signing_removes_it(
    launched, tmp_path
):
    """A crash as a line is written leaves it without its end. It was never a checkpoint:
    verify and export read past it, and the next writer cuts it off before it appends,
    where before it stayed mid-file and broke the evidence for good."""
    path = launched.project.root / "var" / "checkpoints" / f"{CAMPAIGN}.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines()[-1][:57])  # a copy of the last, cut short
    assert launched("evidence", "verify", "--db").exit_code == 0
    pack = tmp_path / "pack"
    assert launched("evidence", "export", CAMPAIGN, "--out", str(pack)).exit_code == 0
    assert (pack / "checkpoints.jsonl").read_bytes() == whole
    verified = subprocess.run(
        [sys.executable, str(pack / "verify.py"), str(pack)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert launched("pause", CAMPAIGN).exit_code == 0  # writes an event, signs it
    after = path.read_bytes()
    assert after.startswith(whole)
    assert after.count(b"\n") == whole.count(b"\n") + 1
    assert all(json.loads(line) for line in after.splitlines())
    assert launched("evidence", "verify", "--db").exit_code == 0


_FULL_DISK = """
import os, resource, signal, sys
from engine.evidence.checkpoints import append_line
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
size = os.path.getsize(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, size + 100))
try:
    append_line(__import__("pathlib").Path(sys.argv[1]), b"x" * 5000)
except OSError as exc:
    print(exc.errno)
"""


def test_a_checkpoint_the_disk_has_no_room_for_leaves_no_half_line(launched):
    """The kernel refuses the write part-way (a file size limit, as a full disk does):
    the part written is cut back off, so the file stays whole."""
    path = launched.project.root / "var" / "checkpoints" / f"{CAMPAIGN}.jsonl"
    whole = path.read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(path)], capture_output=True, text=True
    )
    assert child.stdout.strip() == str(__import__("errno").EFBIG), child.stderr
    assert path.read_bytes() == whole
    assert launched("evidence", "verify", "--db").exit_code == 0


def test_a_different_key_is_refused(launched):
    key = launched.project.root / "var" / "signing.pem"
    key.unlink()
    Signer.create(key)  # another key where the old one was
    result = launched("pause", CAMPAIGN)
    assert result.exit_code == 1
    assert "was signed by another key" in result.stderr
    assert "rotate-key" in result.stderr


def test_rotate_key_keeps_the_old_pin_valid(launched, tmp_path):
    pinned = tmp_path / "pinned.pem"
    pinned.write_text(launched("evidence", "public-key").stdout)
    rotated = launched("evidence", "rotate-key")
    assert rotated.exit_code == 0, rotated.output
    assert launched("pause", CAMPAIGN).exit_code == 0  # signed with the new key
    keys = {cp.key for cp in checkpoints(launched)}
    assert len(keys) == 2
    verified = launched("evidence", "verify", "--db", "--public-key", str(pinned))
    assert verified.exit_code == 0, verified.output
    retired = list((launched.project.root / "var").glob("signing.pem.retired-*"))
    assert len(retired) == 1
    assert stat.S_IMODE(retired[0].stat().st_mode) == 0o600
    # A statement signed by the new key alone does not extend the trust.
    statements = launched.project.root / "var" / "checkpoints" / "keys.jsonl"
    record = json.loads(statements.read_text())
    record["sig_old"] = record["sig_new"]
    statements.write_bytes(canonical(record) + b"\n")
    forged = launched("evidence", "verify", "--db", "--public-key", str(pinned))
    assert forged.exit_code == 1
    assert "not the pinned key" in forged.stderr


def test_witness_command_receives_every_checkpoint(herald, tmp_path):
    received = tmp_path / "received"
    script = tmp_path / "witness.py"
    script.write_text(
        "import sys, pathlib\n"
        f"out = pathlib.Path({str(received)!r}) / sys.argv[1]\n"
        "out.parent.mkdir(exist_ok=True)\n"
        "with out.open('ab') as fp: fp.write(sys.stdin.buffer.read())\n"
    )
    herald.env["HERALD_WITNESS"] = f"{sys.executable} {script}"
    users = tmp_path / "users.csv"
    users.write_text(USERS, encoding="utf-8")
    assert herald("users", "import", str(users)).exit_code == 0
    assert herald("plan", CAMPAIGN).exit_code == 0
    assert herald("send", CAMPAIGN, "--max-wait", "1").exit_code == 0
    local = (herald.project.root / "var" / "checkpoints" / f"{CAMPAIGN}.jsonl").read_bytes()
    assert (received / f"{CAMPAIGN}.jsonl").read_bytes() == local
    verified = herald("evidence", "verify", "--db", "--witness", str(received))
    assert verified.exit_code == 0, verified.output
    assert "2 witnessed" in verified.stdout


def test_a_failing_witness_command_fails_the_writer(herald, tmp_path):
    herald.env["HERALD_WITNESS"] = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    users = tmp_path / "users.csv"
    users.write_text(USERS, encoding="utf-8")
    assert herald("users", "import", str(users)).exit_code == 0
    result = herald("plan", CAMPAIGN)
    assert result.exit_code == 1  # planned, signed locally, but the witness has not got it
    assert "witness command" in result.stderr
    assert "exited 3" in result.stderr
    again = herald("send", CAMPAIGN, "--max-wait", "1")
    assert again.exit_code == 1  # the line still waits for the witness
    assert "wait in" in again.stderr


def test_serve_signs_an_objection_without_any_daemon(launched):
    """`herald serve` alone: the objection is under a signed checkpoint within its interval
    (30 s by default, 1 s here)."""
    before = checkpoints(launched)[-1].size
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--sign-every", "1"],
        cwd=launched.project.root,
        env={**os.environ, **launched.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        keys = Keys(launched.env["HERALD_SECRET"].encode())
        token = keys.token(keys.token_id(CAMPAIGN, "de-1"))
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/object/{token}", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "herald serve did not start"
                time.sleep(0.1)
        assert reply.status_code == 200
        while checkpoints(launched)[-1].size <= before:
            assert time.monotonic() < deadline, "the objection was not signed"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(10)
    signed = checkpoints(launched)[-1].size
    with launched.database().connect() as conn:
        objected = conn.execute(text("SELECT seq FROM event WHERE kind = 'objected'")).scalar()
    assert objected <= signed


def test_a_v0_database_is_verified_as_v0(tmp_path, monkeypatch):
    """A database written before format v1 keeps its chain, checked and named as v0."""
    if os.environ.get("HERALD_TEST_POSTGRES"):
        pytest.skip("the v0 fixture is a SQLite file")
    from engine.evidence.chain import GENESIS, event_hash
    from tests.conftest import Herald, ScratchProject

    path = tmp_path / "var" / "herald.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE event (id INTEGER PRIMARY KEY, campaign_id TEXT, seq INTEGER, kind TEXT, "
        "at TEXT, delivery_id INTEGER, user_id TEXT, channel TEXT, data TEXT, prev_hash TEXT, "
        "hash TEXT, UNIQUE (campaign_id, seq))"
    )
    conn.execute("CREATE TABLE chain_head (campaign_id TEXT PRIMARY KEY, seq INTEGER, hash TEXT)")
    prev = GENESIS
    for seq, kind in enumerate(["planned", "sent"], 1):
        event: dict[str, Any] = {
            "campaign_id": "old", "seq": seq, "kind": kind, "at": "2024-05-01T00:00:00Z",
            "delivery_id": 1, "user_id": "u1", "channel": "email", "data": "{}",
        }  # fmt: skip
        event["prev_hash"], event["hash"] = prev, event_hash(prev, event)
        prev = event["hash"]
        conn.execute(
            "INSERT INTO event (campaign_id, seq, kind, at, delivery_id, user_id, channel, data,"
            " prev_hash, hash) VALUES (:campaign_id, :seq, :kind, :at, :delivery_id, :user_id,"
            " :channel, :data, :prev_hash, :hash)",
            event,
        )
    conn.execute("INSERT INTO chain_head VALUES ('old', 2, ?)", [prev])
    conn.commit()
    conn.close()
    monkeypatch.chdir(tmp_path)
    env: dict[str, str] = {"HERALD_DB": f"sqlite:///{path}", "HERALD_VAR": str(tmp_path / "var"),
           "HERALD_SECRET": "test-secret-0123456789abcdef"}  # fmt: skip
    herald = Herald(ScratchProject(tmp_path), env)
    # The other tables, as the version that wrote v0 had them (opening migrates, once).
    from engine.store import open_database

    open_database(env["HERALD_DB"]).dispose()
    assert herald("evidence", "public-key").exit_code == 0  # a key to trust
    result = herald("evidence", "verify", "--db")
    assert result.exit_code == 0, result.output
    assert "OK old: 2 events in format v0" in result.stdout
    conn = sqlite3.connect(path)
    conn.execute("UPDATE event_v0 SET kind = 'failed' WHERE seq = 2")
    conn.commit()
    conn.close()
    broken = herald("evidence", "verify", "--db")
    assert broken.exit_code == 1
    assert "BROKEN old (format v0)" in broken.stderr


def test_jcs_matches_the_rfc8785_reference_vectors():
    """The published RFC 8785 test vectors (cyberphone's, shipped in the `rfc8785`
    package's sdist): .ci/run unpacks them and names the folder in HERALD_JCS_VECTORS."""
    folder = os.environ.get("HERALD_JCS_VECTORS")
    if not folder:
        if os.environ.get("CI"):
            pytest.fail("CI must set HERALD_JCS_VECTORS (see .ci/run)")
        pytest.skip("set HERALD_JCS_VECTORS to the rfc8785 sdist's test/assets folder")
    from engine.canonical import is_canonical

    inputs = sorted((Path(folder) / "input").glob("*.json"))
    assert len(inputs) >= 6
    for source in inputs:
        expected = (Path(folder) / "output" / source.name).read_bytes()
        value = json.loads(source.read_bytes())
        assert is_canonical(expected), source.name
        if not _has_float(value):  # Herald writes no floats; the reference decides them
            assert canonical(value) == expected, source.name
        pretty = json.dumps(value, indent=1).encode()
        assert not is_canonical(pretty), source.name


def _has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def test_reading_the_log_to_sign_it_holds_a_batch_not_pages_of_the_whole_log(database_url):
    """A checkpoint reads every event since the last one; `herald send` signs every 30 s, so
    what that read holds at once became the parent's RSS for good (keyset pages of 5,000
    dicts: +16 MB at ~20k events). The events come in order, from `after`, one batch of
    rows in memory at a time."""
    import tracemalloc

    from engine.store import open_database, writing
    from engine.store.events import append_events, iter_events

    engine = open_database(database_url)
    count, data = 12_000, {"note": "x" * 300}  # ~500-byte bodies, as a sent event's
    with writing(engine) as conn:
        append_events(conn, CAMPAIGN, [{"kind": "sent", "at": "t", "data": data}] * count)
    tracemalloc.start()
    try:
        seqs = [event["seq"] for event in iter_events(engine, CAMPAIGN)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seqs == list(range(1, count + 1))
    assert peak < 3 * 2**20, f"{peak / 2**20:.1f} MB held while reading {count} events"
    assert [e["seq"] for e in iter_events(engine, CAMPAIGN, after=count - 2)] == [
        count - 1,
        count,
    ]
    engine.dispose()


def test_verify_with_no_key_and_no_checkpoint_says_what_that_can_mean(launched):
    """A writer killed before its first checkpoint leaves events, no key and no checkpoint;
    so would someone who removed them. verify fails, naming both cases."""
    import shutil

    var = launched.project.root / "var"
    (var / "signing.pem").unlink()
    shutil.rmtree(var / "checkpoints")
    result = launched("evidence", "verify", "--db")
    assert result.exit_code == 1
    assert f"nothing is signed: no key at {var / 'signing.pem'} and no checkpoint in " in (
        result.stderr
    )
    assert "or the key and checkpoints were removed" in result.stderr
