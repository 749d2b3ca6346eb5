"""`herald evidence verify --db`: the database's events against the signed checkpoints, the
witness and the tables. I/O: database, checkpoint files.

For each campaign (found from events, heads, campaign rows, checkpoint and witness files,
so deleting one of them hides nothing) the events are streamed once: sequence, canonical
bytes, the fields repeated in columns, and the Merkle root at every signed size. Then the
checkpoints themselves (signature by a trusted key, the chain of `prev` hashes), the head
row, the unsigned tail, and finally the tables against what the events say.
"""

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from engine.canonical import FORMAT, Frontier, leaf_hash, parse_canonical
from engine.evidence.agreement import check_spec_files, check_tables
from engine.evidence.checkpoints import (
    KEYS_FILE,
    Checkpoint,
    checkpoint_file,
    fingerprint,
    read_checkpoints,
    read_rotations,
    unb64,
    verify_signature,
)
from engine.evidence.signing import trusted_keys
from engine.store import stream
from engine.store.events import logged_campaigns, tree_heads

_BEFORE_START = {"paused", "resumed"}  # a campaign may be paused before it starts


class Broken(Exception):
    """The first thing that does not hold, named as precisely as we can."""


@dataclass
class Verdict:
    campaign: str
    events: int = 0
    root: str = ""
    checkpoints: int = 0
    witnessed: int = 0
    unsigned: int = 0
    unsigned_since: str | None = None
    keys: set[str] = field(default_factory=set)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Trust:
    keys: set[bytes]
    pinned: bool  # the anchor came from --public-key, not from this machine


def trust_from(anchor: bytes, pinned: bool, checkpoints: Path, witness: Path | None) -> Trust:
    rotations = list(read_rotations(checkpoints / KEYS_FILE))
    if witness is not None:
        rotations += read_rotations(witness / KEYS_FILE)
    return Trust(trusted_keys(anchor, rotations), pinned)


def campaigns(engine: Engine, checkpoints: Path, witness: Path | None) -> list[str]:
    found = logged_campaigns(engine)
    for folder in (checkpoints, witness):
        if folder is not None and folder.is_dir():
            found |= {p.stem for p in folder.glob("*.jsonl") if p.name != KEYS_FILE}
    return sorted(found)


def verify_campaign(
    engine: Engine,
    campaign: str,
    trust: Trust,
    checkpoints: Path,
    witness: Path | None,
    now: dt.datetime,
    max_unsigned_age_s: float | None = None,
) -> Verdict:
    verdict = Verdict(campaign)
    try:
        _verify(engine, campaign, trust, checkpoints, witness, now, max_unsigned_age_s, verdict)
    except Broken as exc:
        verdict.problem = str(exc)
    except ValueError as exc:  # a malformed checkpoint file, named by the reader
        verdict.problem = str(exc)
    return verdict


def _verify(
    engine: Engine,
    campaign: str,
    trust: Trust,
    checkpoints: Path,
    witness: Path | None,
    now: dt.datetime,
    max_unsigned_age_s: float | None,
    verdict: Verdict,
) -> None:
    local_file = checkpoint_file(checkpoints, campaign)
    signed = check_file(local_file, trust, verdict, linked=True)
    verdict.checkpoints = len(signed)
    if witness is not None:  # a witness may have missed a line: each stands on its own
        witnessed = check_file(checkpoint_file(witness, campaign), trust, verdict, linked=False)
        verdict.witnessed = len(witnessed)
        local_end = max((cp.size for _, cp in signed), default=0)
        witness_end = max((cp.size for _, cp in witnessed), default=0)
        if witness_end > local_end:
            raise Broken(
                f"{local_file} ends at size {local_end}, the witness holds size {witness_end}: "
                "local checkpoints were deleted or rolled back"
            )
        signed += witnessed
    by_size: dict[int, list[tuple[Path, Checkpoint]]] = {}
    for path, cp in signed:
        by_size.setdefault(cp.size, []).append((path, cp))

    tree = Frontier()
    first_unsigned_at: str | None = None
    last_signed = max(by_size, default=0)
    started, bound = False, None
    for row, record in _events(engine, campaign):
        tree.append(leaf_hash(row["body"].encode("utf-8")))
        if record["kind"] == "started" and not started:
            started, bound = True, record["data"].get("files")
        if not started and record["kind"] not in _BEFORE_START:
            raise Broken(
                f"event seq {row['seq']} (row id {row['id']}): `{record['kind']}` before the "
                "campaign's `started` event"
            )
        if tree.size == last_signed + 1:
            first_unsigned_at = record["at"]
        for path, cp in by_size.get(tree.size, ()):
            if tree.root().hex() != cp.root:
                raise Broken(
                    f"{path}:{cp.line}: signed root {cp.root[:16]}… at size {cp.size}, but "
                    f"the events up to seq {cp.size} give {tree.root().hex()[:16]}…: an event "
                    "up to there was changed, removed, inserted or reordered"
                )
    verdict.events, verdict.root = tree.size, tree.root().hex()
    if last_signed > tree.size:
        path, cp = by_size[last_signed][0]
        raise Broken(
            f"{path}:{cp.line} signed {cp.size} events, the database holds {tree.size}: "
            f"events after seq {tree.size} were removed"
        )
    head = tree_heads(engine).get(campaign)
    if tree.size and head != (tree.size, tree.root().hex()):
        said = f"size {head[0]}" if head else "no head row"
        raise Broken(
            f"tree_head row: {said}, but the events give size {tree.size}: the head was edited"
        )
    if tree.size and not signed:
        raise Broken(
            f"{tree.size} events and no signed checkpoint ({local_file} is missing or empty)"
        )
    verdict.unsigned = tree.size - last_signed
    verdict.unsigned_since = first_unsigned_at if verdict.unsigned else None
    if verdict.unsigned and max_unsigned_age_s is not None and first_unsigned_at:
        age = (now - _parse(first_unsigned_at)).total_seconds()
        if age > max_unsigned_age_s:
            raise Broken(
                f"{verdict.unsigned} events after seq {last_signed} are unsigned since "
                f"{first_unsigned_at} ({age:.0f} s > --max-unsigned-age {max_unsigned_age_s:g})"
            )
    if problem := check_tables(engine, campaign) or check_spec_files(engine, campaign, bound):
        raise Broken(problem)


def check_file(
    path: Path, trust: Trust, verdict: Verdict, linked: bool
) -> list[tuple[Path, Checkpoint]]:
    """A checkpoint file's lines, each signed by a trusted key and naming its predecessor."""
    result: list[tuple[Path, Checkpoint]] = []
    previous: Checkpoint | None = None
    for cp in read_checkpoints(path):
        where = f"{path}:{cp.line}"
        if cp.campaign != verdict.campaign:
            raise Broken(f"{where}: a checkpoint of campaign {cp.campaign!r}")
        try:
            key = unb64(cp.key)
            sig = unb64(cp.sig)
        except ValueError:
            raise Broken(f"{where}: key or signature is not base64") from None
        if not verify_signature(key, sig, cp.signed_bytes()):
            raise Broken(f"{where}: bad signature")
        if key not in trust.keys:
            what = "the pinned key" if trust.pinned else "the local key"
            raise Broken(
                f"{where}: signed by key {fingerprint(key)[:16]}…, not {what} or a key it "
                "was rotated to"
            )
        if linked and cp.prev != (previous.digest if previous else None):
            raise Broken(f"{where}: `prev` does not name the line before it")
        if previous is not None and cp.size < previous.size:
            raise Broken(f"{where}: size {cp.size} is smaller than the line before")
        try:
            frontier = cp.frontier()
        except ValueError as exc:
            raise Broken(f"{where}: bad range: {exc}") from None
        if frontier.root().hex() != cp.root:
            raise Broken(f"{where}: its range does not give its root")
        verdict.keys.add(fingerprint(key))
        result.append((path, cp))
        previous = cp
    return result


def _events(engine: Engine, campaign: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    expected = 1
    query = "SELECT id, seq, kind, at, subject, delivery_id, channel, body FROM event "
    for row in stream(engine, query + "WHERE campaign_id = :c ORDER BY seq", {"c": campaign}):
        row = row._mapping
        where = f"event seq {row['seq']} (row id {row['id']})"
        if row["seq"] != expected:
            raise Broken(f"event seq {expected} is missing (next is seq {row['seq']})")
        record = parse_canonical(row["body"].encode("utf-8"))
        if not isinstance(record, dict):
            raise Broken(f"{where}: its bytes are not canonical JSON (RFC 8785)")
        columns = {
            "v": FORMAT,
            "campaign": campaign,
            "seq": row["seq"],
            "kind": row["kind"],
            "at": row["at"],
            "subject": row["subject"],
            "delivery": row["delivery_id"],
            "channel": row["channel"],
        }
        for name, value in columns.items():
            if record.get(name) != value:
                raise Broken(f"{where}: `{name}` in its bytes differs from its column")
        if set(record) != {*columns, "data"} or not isinstance(record["data"], dict):
            raise Broken(f"{where}: unexpected fields")
        yield row, record
        expected += 1


def _parse(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00"))


def summary(verdict: Verdict) -> str:
    keys = ", ".join(sorted(k[:16] + "…" for k in verdict.keys)) or "none"
    text = (
        f"{verdict.events} events (format v{FORMAT}), root {verdict.root[:16]}…, "
        f"{verdict.checkpoints} checkpoint(s) signed by {keys}"
    )
    if verdict.witnessed:
        text += f", {verdict.witnessed} witnessed"
    if verdict.unsigned:
        text += f"; {verdict.unsigned} unsigned since {verdict.unsigned_since}"
    return text


def record_verdicts(folder: Path, verdicts: Sequence[Verdict], trust: Trust, at: str) -> None:
    """Remember the verdict per campaign for `herald report` (var/verified/<campaign>.json):
    a note for readers, not evidence; only a new run of verify proves anything."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for verdict in verdicts:
        note = {
            "verified": verdict.ok,
            "checked_at": at,
            "events": verdict.events,
            "root": verdict.root,
            "key_fingerprints": sorted(verdict.keys),
            "pinned_key": trust.pinned,
            "witnessed": verdict.witnessed,
            "problem": verdict.problem,
        }
        (folder / f"{verdict.campaign}.json").write_text(json.dumps(note, indent=2) + "\n")


def recorded_verdict(folder: Path, campaign: str) -> dict[str, Any] | None:
    path = folder / f"{campaign}.json"
    try:
        note = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def evidence_status(folder: Path, engine: Engine, campaign: str) -> dict[str, Any]:
    """What the report says of the evidence: the last `herald evidence verify` verdict and
    how much of today's log it covered."""
    note = recorded_verdict(folder, campaign) or {}
    size = tree_heads(engine).get(campaign, (0, ""))[0]
    checked = note.get("events") if isinstance(note.get("events"), int) else None
    keys = note.get("key_fingerprints") or [None]
    return {
        "verified": note.get("verified"),
        "checked_at": note.get("checked_at"),
        "key_fingerprint": keys[-1],
        "pinned_key": note.get("pinned_key"),
        "events_verified": checked,
        "events_now": size,
        "problem": note.get("problem"),
    }
