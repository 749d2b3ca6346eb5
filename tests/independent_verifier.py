"""A second verifier, written from docs/evidence.md alone: it imports nothing of Herald's.

It reads a SQLite database and a checkpoint folder, and returns the problems it finds
(an empty list when the evidence holds). tests/test_evidence_independent.py checks that it
reaches the same verdict as `herald evidence verify`.
"""

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FINAL = {"delivered", "failed", "bounced"}
STATUS = {"planned", "deferred", "sent", *FINAL}


def jcs(value: object) -> bytes:
    """RFC 8785 for values without floats (docs §2)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def fold(range_: list[str]) -> bytes:
    hashes = [bytes.fromhex(h) for h in range_]
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node(left, root)
    return root


def signed_ok(key_b64: str, sig_b64: str, data: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64))
        key.verify(base64.b64decode(sig_b64), data)
    except (ValueError, InvalidSignature):
        return False
    return True


def trusted(pinned_pem: bytes, keys_file: Path) -> set[str]:
    key = serialization.load_pem_public_key(pinned_pem)
    assert isinstance(key, Ed25519PublicKey)
    keys = {base64.b64encode(key.public_bytes_raw()).decode()}
    if keys_file.exists():
        for line in keys_file.read_bytes().splitlines():
            r = json.loads(line)
            fields = {k: r[k] for k in ("v", "type", "old", "new", "at")}
            data = b"herald key rotation v1\n" + jcs(fields)
            if (
                r["old"] in keys
                and signed_ok(r["old"], r["sig_old"], data)
                and signed_ok(r["new"], r["sig_new"], data)
            ):
                keys.add(r["new"])
    return keys


def verify(database: Path, checkpoints: Path, pinned_pem: bytes) -> list[str]:
    problems: list[str] = []
    keys = trusted(pinned_pem, checkpoints / "keys.jsonl")
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    campaigns = {r[0] for r in conn.execute("SELECT DISTINCT campaign_id FROM event")}
    campaigns |= {p.stem for p in checkpoints.glob("*.jsonl") if p.name != "keys.jsonl"}
    for campaign in sorted(campaigns):
        problems += _campaign(conn, campaign, checkpoints / f"{campaign}.jsonl", keys)
    conn.close()
    return problems


def _campaign(conn: sqlite3.Connection, campaign: str, path: Path, keys: set[str]) -> list[str]:
    leaves: list[bytes] = []
    status: dict[int, str] = {}
    started = False
    rows = conn.execute(
        "SELECT seq, kind, at, subject, delivery_id, channel, body FROM event "
        "WHERE campaign_id = ? ORDER BY seq",
        [campaign],
    )
    for seq, kind, at, subject, delivery, channel, body in rows:
        raw = body.encode()
        record = json.loads(raw)
        if seq != len(leaves) + 1:
            return [f"{campaign}: seq {len(leaves) + 1} missing"]
        if jcs(record) != raw:
            return [f"{campaign}: seq {seq} not canonical"]
        expected = {"v": 1, "campaign": campaign, "seq": seq, "kind": kind, "at": at,
                    "subject": subject, "delivery": delivery, "channel": channel}  # fmt: skip
        if {k: record.get(k) for k in expected} != expected or set(record) != {*expected, "data"}:
            return [f"{campaign}: seq {seq} fields differ from its columns"]
        started = started or kind == "started"
        if not started and kind not in ("paused", "resumed"):
            return [f"{campaign}: seq {seq} before started"]
        if delivery is not None and kind in STATUS:
            before = status.get(delivery)
            if before in FINAL or (before == "sent" and kind != "bounced"):
                return [f"{campaign}: seq {seq} {kind} after final {before}"]
            status[delivery] = kind
        leaves.append(hashlib.sha256(b"\x00" + raw).digest())
    lines = path.read_bytes().splitlines() if path.exists() else []
    if leaves and not lines:
        return [f"{campaign}: no checkpoint"]
    previous = None
    for number, line in enumerate(lines, 1):
        cp = json.loads(line)
        fields = {k: v for k, v in cp.items() if k != "sig"}
        if not signed_ok(cp["key"], cp["sig"], b"herald checkpoint v1\n" + jcs(fields)):
            return [f"{path}:{number}: bad signature"]
        if cp["key"] not in keys:
            return [f"{path}:{number}: untrusted key"]
        if cp["prev"] != (hashlib.sha256(previous).hexdigest() if previous else None):
            return [f"{path}:{number}: prev"]
        if fold(cp["range"]).hex() != cp["root"]:
            return [f"{path}:{number}: range"]
        if cp["size"] > len(leaves) or mth(leaves[: cp["size"]]).hex() != cp["root"]:
            return [f"{path}:{number}: root does not match the events"]
        previous = line
    return []
