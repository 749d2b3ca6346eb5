"""The tables agree with the events: deliveries, in-app bodies, objections and the files
a campaign was launched with. I/O: database.

The report and the service read tables; the evidence is the events. Whoever edits a
table (18 `failed` made `sent`, an objection deleted) without a matching event is named
here. Deliveries and their events are merge-joined in id order, so memory stays flat.
"""

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from engine.statuses import DeliveryStatus
from engine.store import stream
from engine.store.campaigns import stored_files

_FINAL_KINDS = {"delivered", "failed", "bounced"}
_STATUS_KINDS = {"planned", "deferred", "sent", *_FINAL_KINDS}
_OPEN = {DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value, "deferred"}

# An erased user's rows carry `erased:<subject>` instead of their id (see
# delivery/erasure.py): their subject is read from there, and their in-app text is gone.
_SUBJECT = (
    "COALESCE(s.subject, CASE WHEN {t}.user_id LIKE 'erased:%' THEN substr({t}.user_id, 8) END)"
)
_DELIVERIES = (
    "SELECT d.id, d.status, d.channel, d.message_id, d.content_sha256, d.interrupted, "
    f"{_SUBJECT.format(t='d')} AS subject, d.user_id LIKE 'erased:%' AS erased, "
    "n.title, n.body FROM delivery d "
    "LEFT JOIN subject_key s ON s.user_id = d.user_id "
    "LEFT JOIN inapp_notification n ON n.delivery_id = d.id "
    "WHERE d.campaign_id = :c ORDER BY d.id"
)
_EVENTS = (
    "SELECT delivery_id, seq, kind, subject, channel, body FROM event "
    "WHERE campaign_id = :c AND delivery_id IS NOT NULL ORDER BY delivery_id, seq"
)
_OBJECTIONS = (
    f"SELECT o.id, o.purpose, o.via, {_SUBJECT.format(t='o')} AS subject FROM objection o "
    "LEFT JOIN subject_key s ON s.user_id = o.user_id "
    "WHERE o.campaign_id = :c ORDER BY o.id"
)


def check_tables(engine: Engine, campaign: str) -> str | None:
    """The first row of `delivery`, `inapp_notification` or `objection` that differs from
    what the campaign's events say, or None."""
    objected: dict[int, dict[str, Any]] = {}
    groups = _event_groups(engine, campaign)
    group = next(groups, None)
    for row in _rows(engine, _DELIVERIES, campaign):
        if group is not None and group[0] < row["id"]:
            return f"delivery id {group[0]} is in the events but not in the delivery table"
        if group is None or group[0] != row["id"]:
            return f"delivery row id {row['id']} has no `planned` event"
        problem = _compare(row, group[1], objected)
        if problem:
            return f"delivery row id {row['id']}: {problem}"
        group = next(groups, None)
    if group is not None:
        return f"delivery id {group[0]} is in the events but not in the delivery table"
    for row in _rows(engine, _OBJECTIONS, campaign):
        event = objected.pop(row["id"], None)
        if event is None:
            return f"objection row id {row['id']} has no `objected` event"
        if (row["subject"], row["purpose"], row["via"]) != (
            event["subject"],
            event["data"].get("purpose"),
            event["data"].get("via"),
        ):
            return f"objection row id {row['id']} differs from its event (seq {event['seq']})"
    if objected:
        objection_id, event = next(iter(objected.items()))
        return (
            f"objection id {objection_id} (event seq {event['seq']}) is missing from the "
            "objection table"
        )
    return None


def check_spec_files(engine: Engine, campaign: str, bound: Any) -> str | None:
    """The first stored campaign file (spec_file) that is not what the `started` event
    bound (`bound`: its `files`, path: SHA-256), or one of those missing; None when all
    agree. The report, the objection pages and later sends read these files."""
    if not isinstance(bound, dict):
        return None  # no binding to hold them to (evidence format v0)
    stored = {f.path: hashlib.sha256(f.content).hexdigest() for f in stored_files(engine, campaign)}
    for path in sorted(stored.keys() | bound.keys()):
        if path not in bound:
            return f"stored campaign file {path}: not among the files `started` bound"
        if path not in stored:
            return f"stored campaign file {path}: bound by `started`, missing from spec_file"
        if stored[path] != bound[path]:
            return f"stored campaign file {path}: differs from what `started` bound"
    return None


def _compare(
    row: dict[str, Any], events: list[dict[str, Any]], objected: dict[int, dict[str, Any]]
) -> str | None:
    if events[0]["kind"] != "planned":
        return f"its first event (seq {events[0]['seq']}) is `{events[0]['kind']}`, not `planned`"
    status, success = "planned", None
    for event in events:
        kind = event["kind"]
        if kind == "objected":
            objected[event["data"].get("objection_id")] = event
        if kind not in _STATUS_KINDS or kind == "planned" and event is events[0]:
            continue
        if status in _FINAL_KINDS or (status == "sent" and kind != "bounced"):
            return f"event seq {event['seq']} `{kind}` follows the final `{status}`"
        status = kind
        if kind in ("sent", "delivered"):
            success = event
    if row["subject"] != events[0]["subject"]:
        return "its user's subject differs from the events'"
    if row["channel"] != events[0]["channel"]:
        return f"channel {row['channel']!r}, the events say {events[0]['channel']!r}"
    table = row["status"]
    if status in ("planned", "deferred"):
        if table not in _OPEN:
            return f"status {table!r}, the events say it is still open ({status})"
    elif table != status:
        return f"status {table!r}, the events say {status!r} (seq {events[-1]['seq']})"
    if success is not None:
        data = success["data"]
        if row["message_id"] != data.get("message_id"):
            return f"message id differs from event seq {success['seq']}"
        if row["content_sha256"] != data.get("content_sha256"):
            return f"content hash differs from event seq {success['seq']}"
        # the report counts a possible duplicate from `interrupted`; the event says it
        if table == success["kind"] and (row["interrupted"] > 0) != (
            data.get("possible_duplicate") is True
        ):
            return f"a possible duplicate or not, unlike event seq {success['seq']} says"
    if row["erased"]:
        pass  # the in-app text went with the person; the events still prove it was shown
    elif row["title"] is not None or row["body"] is not None:
        if success is None or success["kind"] != "delivered":
            return "an in-app notification exists, but no `delivered` event"
        digest = hashlib.sha256(row["title"].encode())
        for part in (row["body"], ""):
            digest.update(b"\0" + part.encode())
        if digest.hexdigest() != success["data"].get("content_sha256"):
            return f"the in-app title or body differs from what event seq {success['seq']} hashed"
    elif success is not None and success["kind"] == "delivered":
        return "the in-app notification is missing"
    return None


def _rows(engine: Engine, query: str, campaign: str) -> Iterator[dict[str, Any]]:
    for row in stream(engine, query, {"c": campaign}):
        yield dict(row._mapping)


def _event_groups(engine: Engine, campaign: str) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(delivery id, its events in seq order), in delivery id order."""
    current: tuple[int, list[dict[str, Any]]] | None = None
    for delivery_id, seq, kind, subject, channel, body in stream(engine, _EVENTS, {"c": campaign}):
        event = {"seq": seq, "kind": kind, "subject": subject, "channel": channel}
        event["data"] = json.loads(body)["data"]
        if current is None or current[0] != delivery_id:
            if current is not None:
                yield current
            current = (delivery_id, [])
        current[1].append(event)
    if current is not None:
        yield current
