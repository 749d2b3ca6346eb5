"""Receipts: one user's events with Merkle inclusion proofs against a signed checkpoint.
I/O: database (making one); pure (checking one).

A receipt is what a controller hands one user, or a regulator about one user: their
events, the secret that ties their id to their subject, the keyed hash of their address,
and what they were sent (Message-ID, content hash). It reveals no other user: the proofs
are hashes of other events, which cannot be reversed.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from engine.canonical import FORMAT, canonical, leaf_hash
from engine.errors import EngineError
from engine.evidence.checkpoints import (
    Checkpoint,
    checkpoint_file,
    last_checkpoint,
    unb64,
    verify_signature,
)
from engine.evidence.merkle import Leaves, inclusion_proof, verify_inclusion
from engine.store.events import iter_events, subject_of, subject_secret


class ReceiptError(EngineError):
    """No receipt can be made: an unknown or erased user, or nothing signed yet."""


def make_receipt(
    engine: Engine, checkpoints: Path, campaign: str, user_id: str, address_hash: str | None
) -> dict[str, Any]:
    """The receipt of `user_id` in `campaign`, against the campaign's last checkpoint."""
    found = subject_secret(engine, user_id)
    if found is None:
        raise ReceiptError(
            f"user {user_id!r} has no subject in this database: never notified, or erased "
            "(an erased user is unlinkable by design, so no receipt can name them)"
        )
    subject, secret = found
    cp = last_checkpoint(checkpoint_file(checkpoints, campaign))
    # One pass over the campaign's events, which the proofs need anyway: the leaves up to
    # the checkpoint, the user's events (found by subject here rather than through an
    # index that every append would have to keep up) and the first `started`, which binds
    # the notice.
    leaves, bodies, signed = Leaves(), {}, cp.size if cp else 0
    theirs, started = [], None
    for event in iter_events(engine, campaign):
        seq, body = event["seq"], event["body"]
        if seq <= signed:
            leaves.append(leaf_hash(body.encode("utf-8")))
        if event["subject"] == subject:
            theirs.append(seq)
            bodies[seq] = body
        elif started is None and event["kind"] == "started":
            started = seq
            bodies[seq] = body
    if started is None and not theirs:
        raise ReceiptError(f"no campaign {campaign!r} in this database (no event of it)")
    if not theirs:
        raise ReceiptError(f"campaign {campaign} has no event about user {user_id!r}")
    wanted = sorted(bodies)
    if cp is None or cp.size < wanted[-1]:
        raise ReceiptError(
            f"the events of user {user_id!r} are not all under a signed checkpoint yet; "
            "a writer signs within 60 s: try again in a minute"
        )
    events = [
        {
            "seq": seq,
            "body": bodies[seq],
            "proof": [h.hex() for h in inclusion_proof(leaves, seq - 1, cp.size)],
        }
        for seq in wanted
    ]
    return {
        "v": FORMAT,
        "type": "receipt",
        "campaign": campaign,
        "user_id": user_id,
        "subject": subject,
        "secret": secret,
        "address_hash": address_hash,
        "messages": _messages(events),
        "events": events,
        "checkpoint": json.loads(canonical({**cp.fields(), "sig": cp.sig})),
    }


def _messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the user was sent, as their own mailbox or app can show it."""
    found = []
    for event in events:
        record = json.loads(event["body"])
        if record["kind"] in ("sent", "delivered"):
            data = record["data"]
            found.append(
                {
                    "channel": record["channel"],
                    "at": record["at"],
                    "message_id": data.get("message_id"),
                    "content_sha256": data.get("content_sha256"),
                }
            )
    return found


def check_receipt(receipt: Mapping[str, Any], trusted: set[bytes] | None) -> list[str]:
    """Every problem with a receipt (empty when it holds). `trusted`: the keys allowed to
    have signed its checkpoint; None trusts the key it carries (said by the caller)."""
    try:
        cp, events = _parsed(receipt)
    except KeyError as exc:
        return [f"not a well-formed receipt: {exc} is missing"]
    except (TypeError, ValueError) as exc:
        return [f"not a well-formed receipt: {exc}"]
    key, subject = unb64(cp.key), receipt["subject"]
    problems = []
    if not verify_signature(key, unb64(cp.sig), cp.signed_bytes()):
        problems.append("checkpoint: bad signature")
    if trusted is not None and key not in trusted:
        problems.append("checkpoint: signed by a key that is not trusted")
    if cp.frontier().root().hex() != cp.root:
        problems.append("checkpoint: its range does not give its root")
    if subject_of(receipt["user_id"], bytes.fromhex(receipt["secret"])) != subject:
        problems.append("subject: not the HMAC of the user id under the secret")
    if not events:
        problems.append("no events")
    for seq, body, record, proof in events:
        where = f"event seq {seq}"
        mine = record.get("subject") == subject or (
            record.get("subject") is None and record.get("kind") == "started"
        )
        if not mine or record.get("seq") != seq:
            problems.append(f"{where}: not this user's event")
        if record.get("campaign") != receipt.get("campaign") or canonical(record) != body:
            problems.append(f"{where}: not a canonical event of this campaign")
        if not verify_inclusion(leaf_hash(body), seq - 1, cp.size, proof, bytes.fromhex(cp.root)):
            problems.append(f"{where}: its inclusion proof does not reach the signed root")
    if _messages(list(receipt["events"])) != receipt.get("messages"):
        problems.append("messages: not those of the events")
    return problems


def _parsed(
    receipt: Mapping[str, Any],
) -> tuple[Checkpoint, list[tuple[int, bytes, dict[str, Any], list[bytes]]]]:
    """The receipt's checkpoint and events, every field checked for its type; raises
    ValueError (or KeyError, TypeError) naming the first field that is not as specified."""
    for name in ("campaign", "user_id", "subject", "secret"):
        if not isinstance(receipt[name], str):
            raise ValueError(f"{name!r} is not a string")
    _hex(receipt["secret"], "secret")
    fields = dict(receipt["checkpoint"])
    if not isinstance(fields["size"], int) or not isinstance(fields["range"], list):
        raise ValueError("'checkpoint' has a size or range of the wrong type")
    cp = Checkpoint(
        **{k: fields[k] for k in ("campaign", "size", "root", "at", "prev", "key", "sig")},
        range=tuple(fields["range"]),
        line=0,
        digest="",
    )
    for name, value in (("key", cp.key), ("sig", cp.sig)):
        try:
            unb64(value)
        except ValueError:
            raise ValueError(f"'checkpoint.{name}' is not base64") from None
    _hex(cp.root, "checkpoint.root")
    for i, node in enumerate(cp.range):
        _hex(node, f"checkpoint.range[{i}]")
    events = []
    for i, event in enumerate(receipt["events"]):
        seq, body = event["seq"], event["body"]
        if not isinstance(seq, int) or not isinstance(body, str) or seq < 1:
            raise ValueError(f"events[{i}]: 'seq' must be a positive integer, 'body' a string")
        record = json.loads(body)
        if not isinstance(record, dict):
            raise ValueError(f"events[{i}].body is not a JSON object")
        proof = [_hex(h, f"events[{i}].proof[{j}]") for j, h in enumerate(event["proof"])]
        events.append((seq, body.encode("utf-8"), record, proof))
    return cp, events


def _hex(value: object, name: str) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise ValueError(f"{name!r} is not hexadecimal") from None
