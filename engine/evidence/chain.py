"""Verifying a campaign's hash chain. Pure: no I/O."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.canonical import GENESIS, event_hash


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
