"""SQL tables (DESIGN section 6). Declarations only.

Scheduling times in `delivery` are UTC epoch seconds (float): comparable in one indexed
range scan, and the same on SQLite and PostgreSQL. Events carry ISO 8601 UTC strings,
because they are evidence meant to be read.
"""

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from engine.statuses import NOTICE


class UserRow(SQLModel, table=True):
    __tablename__ = "user"

    id: str = Field(primary_key=True)
    email: str | None = None
    name: str | None = None
    country: str = Field(index=True)
    locale: str | None = None
    timezone: str | None = None
    attributes: str = "{}"  # JSON object: extra import columns, kept as given
    updated_at: float


class CampaignRow(SQLModel, table=True):
    """A campaign the engine knows. `state` is its lifecycle as written by whoever moved
    it (scheduled, planning, planned, refused); sending/done/paused are derived for display."""

    __tablename__ = "campaign"

    id: str = Field(primary_key=True)
    title: str
    spec_hash: str  # SHA-256 over the YAML, templates and catalogs it was planned with
    state: str
    created_at: float
    planned_at: float | None = None  # set when planning started: the spec is fixed from then
    start_at: float | None = None
    deadline_at: float | None = None
    rate_per_second: float | None = None
    reason_retention_days: int | None = None  # objection reasons are purged after this
    paused: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    problem: str | None = None  # why the file was refused, or the last refused change


class SpecFile(SQLModel, table=True):
    """The exact files a campaign was launched with, so it keeps them when the disk changes."""

    __tablename__ = "spec_file"

    campaign_id: str = Field(primary_key=True)
    path: str = Field(primary_key=True)  # relative to the project root
    sha256: str
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class RateSlot(SQLModel, table=True):
    """The next free send slot per campaign and channel, shared by every worker."""

    __tablename__ = "rate_slot"

    campaign_id: str = Field(primary_key=True)
    channel: str = Field(primary_key=True)
    next_at: float


class DaemonRow(SQLModel, table=True):
    """A running `herald daemon`: its heartbeat tells `herald status` it is alive."""

    __tablename__ = "daemon"

    id: str = Field(primary_key=True)  # host:pid
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None


class DeliveryRow(SQLModel, table=True):
    """One user on one channel of one campaign; the unit of work and of evidence."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("campaign_id", "user_id", "channel", "message"),
        Index("ix_delivery_due", "campaign_id", "status", "next_attempt_at"),
        # and ix_delivery_email_message_id, emails' Message-IDs only (schema.PARTIAL_INDEXES)
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str
    user_id: str
    channel: str
    message: str = Field(default=NOTICE, sa_column_kwargs={"server_default": NOTICE})
    # 'notice' (the campaign's message) or 'confirmation' (of the user's objection)
    country: str
    locale: str
    locale_source: str
    fell_back: bool
    is_fallback: bool = False  # planned because every listed channel failed
    token_id: str = Field(index=True)
    status: str
    attempts: int = 0
    next_attempt_at: float
    lease_owner: str | None = None
    lease_until: float | None = None
    # attempts whose outcome is unknown (a crash; a connection lost after the message, which
    # the server may have taken): a later send may duplicate
    interrupted: int = 0
    message_id: str | None = None
    content_sha256: str | None = None
    reply: str | None = None  # the server's final reply, e.g. "250 2.0.0 queued as X"
    last_error: str | None = None
    sent_at: float | None = None
    bounced_at: float | None = None  # when a permanent DSN for it was recorded


class EventRow(SQLModel, table=True):
    """Evidence format v1 (docs/evidence.md): append-only, one Merkle tree per campaign.

    `body` is the event's canonical bytes (RFC 8785): the Merkle leaf, and the only column
    the evidence relies on. The other columns repeat fields of the body for queries;
    `herald evidence verify` checks they agree. Triggers refuse UPDATE and DELETE.
    """

    __tablename__ = "event"
    __table_args__ = (
        UniqueConstraint("campaign_id", "seq"),
        Index("ix_event_delivery", "campaign_id", "delivery_id", "seq"),
        # No index on subject: its keys are random, so every append rewrote a page of it,
        # and the one reader (a receipt) reads the whole log for its proofs anyway.
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str
    seq: int  # 1-based: the event's leaf index + 1
    kind: str
    at: str
    subject: str | None = None  # the user's pseudonym (see SubjectKey)
    delivery_id: int | None = None
    channel: str | None = None
    body: str  # canonical JSON, UTF-8


class TreeHead(SQLModel, table=True):
    """Each campaign's Merkle tree as appended so far: its size, root and compact range,
    so an append costs O(log n). Anyone who can write the database can rewrite this row:
    the signed checkpoints, kept outside it, are what an auditor trusts."""

    __tablename__ = "tree_head"

    campaign_id: str = Field(primary_key=True)
    size: int
    root: str  # hex
    frontier: str  # hex subtree roots, largest first, comma-separated


class SubjectKey(SQLModel, table=True):
    """A user's pseudonym in the evidence: subject = HMAC-SHA256(secret, user id).

    The secret is random per user and lives only here; erasing the row makes the subject
    unlinkable to anyone, while every event that names it still verifies."""

    __tablename__ = "subject_key"

    user_id: str = Field(primary_key=True)
    subject: str = Field(unique=True)
    secret: str  # hex, 32 random bytes


class InAppNotification(SQLModel, table=True):
    __tablename__ = "inapp_notification"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(unique=True)
    user_id: str = Field(index=True)
    campaign_id: str
    locale: str
    title: str
    body: str
    objection_url: str
    created_at: float
    seen_at: float | None = None


class ObjectionRow(SQLModel, table=True):
    """A user's objection to a processing purpose: one per user and purpose, whichever
    campaign's link carried it. The reason is personal data and stays out of the chain."""

    __tablename__ = "objection"
    __table_args__ = (UniqueConstraint("user_id", "purpose"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str
    purpose: str = Field(index=True)
    campaign_id: str = Field(index=True)  # whose notice carried the link
    channel: str  # the notice's channel: email if it reached the user by email, else inapp
    locale: str  # the language of the page the user objected on
    reason: str | None = None
    objected_at: float = Field(index=True)
    via: str  # 'page' or 'api' (GDPR Art. 21(5), objection by automated means)


class BounceReceipt(SQLModel, table=True):
    """A delay or complaint already recorded, so that the same report read twice (served,
    then ingested from a mailbox) records nothing new."""

    __tablename__ = "bounce_receipt"

    key: str = Field(primary_key=True)  # SHA-256 of kind, delivery and the report's identity
    delivery_id: int
    kind: str
    received_at: float
