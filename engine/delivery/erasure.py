"""`herald users erase`: a user's personal data goes, the proof stays. I/O: database, files.

What goes (GDPR Art. 17): the user row (address, name, attributes), the title, body and
link of their in-app notices, the keyed token id that led from their id to their rows,
the reasons they gave when objecting, their outbox files, any address quoted in a server
reply, and the secret that links their id to their subject.

What stays (Art. 17(3)(b) and (e): a legal obligation, and the defence of legal claims):
the events, which name only the subject and now link to no one, and the rows the report
counts, keyed by that subject. An objection stays too, as a suppression record keyed by
the subject, so the objection is still honoured and counted (Art. 21).
"""

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, bindparam, text

from engine.errors import EngineError
from engine.store import writing
from engine.store.events import ERASED, append_events, iso


class ErasureError(EngineError):
    """Nothing was erased: an unknown id, or an unusable list of ids."""


@dataclass
class Erased:
    users: int = 0
    campaigns: set[str] = field(default_factory=set)
    files: int = 0


def read_ids(path: Path) -> list[str]:
    """User ids, one per line (blank lines and # comments skipped). Raises ErasureError
    naming the line of anything that is not an id."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ErasureError(f"{path}: cannot read a list of user ids ({exc})") from exc
    ids = []
    for number, line in enumerate(lines, 1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if any(c in value for c in ",;\t\"'") or len(value) > 200:
            raise ErasureError(f"{path}:{number}: not a user id: {value[:40]!r}")
        ids.append(value)
    if not ids:
        raise ErasureError(f"{path}: no user ids")
    return ids


def erase_users(
    engine: Engine,
    user_ids: Iterable[str],
    outbox: Path,
    redact: Callable[[str], str],
    now: float,
) -> Erased:
    """Erase every user in one transaction (all or none), then their outbox files.
    `redact` replaces addresses in stored server replies by their keyed hash."""
    ids = list(dict.fromkeys(user_ids))
    result = Erased()
    files: list[str] = []
    with writing(engine) as conn:
        known = {
            r[0]
            for r in conn.execute(
                text('SELECT id FROM "user" WHERE id IN :ids').bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )
        }
        unknown = [u for u in ids if u not in known]
        if unknown:
            raise ErasureError(
                f"no such user: {', '.join(unknown[:10])}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
                + "; nothing was erased"
            )
        for user_id in ids:
            found = conn.execute(
                text("SELECT subject FROM subject_key WHERE user_id = :u"), {"u": user_id}
            ).first()
            subject = found[0] if found else None
            campaigns = [
                r[0]
                for r in conn.execute(
                    text("SELECT DISTINCT campaign_id FROM delivery WHERE user_id = :u"),
                    {"u": user_id},
                )
            ]
            files += [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT message_id FROM delivery WHERE user_id = :u AND channel = 'email'"
                        " AND message_id IS NOT NULL"
                    ),
                    {"u": user_id},
                )
            ]
            for row in conn.execute(
                text("SELECT id, reply, last_error FROM delivery WHERE user_id = :u"),
                {"u": user_id},
            ).all():
                conn.execute(
                    text("UPDATE delivery SET reply = :r, last_error = :e WHERE id = :i"),
                    {
                        "r": redact(row.reply) if row.reply else None,
                        "e": redact(row.last_error) if row.last_error else None,
                        "i": row.id,
                    },
                )
            pseudonym = f"{ERASED}{subject}" if subject else f"{ERASED}unlogged"
            params = {"u": user_id, "p": pseudonym}
            conn.execute(
                text(
                    "UPDATE inapp_notification SET title = '', body = '', objection_url = '', "
                    "user_id = :p WHERE user_id = :u"
                ),
                params,
            )
            conn.execute(
                text("UPDATE objection SET reason = NULL, user_id = :p WHERE user_id = :u"),
                params,
            )
            # token_id is an HMAC of the user id: whoever holds HERALD_SECRET could find the
            # rows (and so the subject) again from the id. A random one breaks that link, and
            # the erased person's objection link with it.
            conn.execute(
                text("UPDATE delivery SET user_id = :p, token_id = :t WHERE user_id = :u"),
                {**params, "t": "erased-" + os.urandom(16).hex()},
            )
            conn.execute(text('DELETE FROM "user" WHERE id = :u'), {"u": user_id})
            conn.execute(text("DELETE FROM subject_key WHERE user_id = :u"), {"u": user_id})
            for campaign in campaigns if subject else ():
                append_events(
                    conn,
                    campaign,
                    [{"kind": "erased", "at": iso(now), "subject": subject, "data": {}}],
                )
            result.campaigns.update(campaigns)
            result.users += 1
    for message_id in files:
        path = outbox / (message_id.strip("<>").replace("/", "_") + ".eml")
        try:
            os.unlink(path)
            result.files += 1
        except FileNotFoundError:
            pass
    _forget_freed_pages(engine)
    return result


def _forget_freed_pages(engine: Engine) -> None:
    """SQLite keeps old page images in the WAL until a checkpoint; secure_delete (set on
    every connection) already zeroes freed cells in the database file."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
