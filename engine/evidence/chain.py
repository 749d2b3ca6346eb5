"""Evidence format v0 (before v1): verifying a campaign's hash chain. Pure: no I/O.

Databases written before format v1 keep these events (table `event_v0`): each event's
hash is SHA-256 over the previous hash, a newline and the event's JSON with sorted keys.
Nothing writes v0 any more; `herald evidence verify` still checks it and says so.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("campaign_id", "seq", "kind", "at", "delivery_id", "user_id", "channel", "data")


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """`event` holds HASHED_FIELDS, with `data` already JSON text."""
    body = json.dumps(
        {k: event[k] for k in HASHED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    campaign_id: str
    seq: int
    row_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"campaign {self.campaign_id}: event seq {self.seq} (row id {self.row_id})"
        return f"{where}: {self.reason}"


def verify_chain(
    events: Iterable[Mapping[str, Any]], head: tuple[int, str] | None
) -> ChainBreak | None:
    """Check one campaign's events, in seq order, against each other and the head.

    Returns the first broken record, or None when the chain is intact.
    """
    prev, expected_seq, campaign = GENESIS, 1, ""
    for event in events:
        campaign = event["campaign_id"]
        if event["seq"] != expected_seq:
            return ChainBreak(
                campaign,
                expected_seq,
                event.get("id"),
                f"missing; found seq {event['seq']} instead",
            )
        if event["prev_hash"] != prev:
            return ChainBreak(
                campaign,
                event["seq"],
                event.get("id"),
                "prev_hash does not match the previous event",
            )
        if event_hash(prev, event) != event["hash"]:
            return ChainBreak(
                campaign, event["seq"], event.get("id"), "content does not match its hash"
            )
        prev, expected_seq = event["hash"], expected_seq + 1
    if head is not None and (head[0] != expected_seq - 1 or head[1] != prev):
        return ChainBreak(
            campaign,
            head[0],
            None,
            f"chain ends at seq {expected_seq - 1} but the head records seq {head[0]}: "
            "events were removed",
        )
    return None
