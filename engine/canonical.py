"""The bytes of the evidence: canonical JSON and event hashes. Pure: no I/O.

Each event's hash is SHA-256 over the previous event's hash and the event's canonical
JSON (sorted keys, no spaces, UTF-8), so changing, removing or reordering any event
breaks every hash after it. The store writes these bytes and the evidence layer checks
them, so they live below both.
"""

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = ("campaign_id", "seq", "kind", "at", "delivery_id", "user_id", "channel", "data")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """`event` holds HASHED_FIELDS, with `data` already canonical JSON text."""
    body = canonical_json({k: event[k] for k in HASHED_FIELDS})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()
