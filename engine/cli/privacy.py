"""Privacy commands: erase users. I/O: database, files, terminal."""

import time
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import err, fail, open_store, out
from engine.cli.delivery import users_app
from engine.errors import EngineError


@users_app.command("erase")
def users_erase(
    user_ids: Annotated[list[str] | None, typer.Argument(help="User ids to erase.")] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", help="A file of user ids, one per line.")
    ] = None,
) -> None:
    """Erase users' personal data (GDPR Art. 17); the evidence and the report's totals stay."""
    # Imported here so that `herald --help` starts without the database (cli/common.py).
    from engine.delivery.erasure import ErasureError, erase_users, read_ids
    from engine.delivery.tokens import Keys
    from engine.evidence.redaction import redact_addresses
    from engine.evidence.signing import sign_heads

    try:
        ids = [*(user_ids or []), *(read_ids(from_file) if from_file else [])]
    except ErasureError as exc:
        fail(str(exc))
    if not ids:
        raise typer.BadParameter("give user ids, or --from FILE")
    settings, engine = open_store(create=False)  # erase nothing in a new, empty database
    keys = Keys(settings.secret)
    try:
        erased = erase_users(
            engine,
            ids,
            settings.outbox,
            lambda text: redact_addresses(text, keys.email_hash),
            time.time(),
        )
    except ErasureError as exc:
        fail(str(exc))
    try:  # every writer signs what it wrote: the `erased` events
        sign_heads(settings, engine)
    except EngineError as exc:
        err.print(f"erased, but not yet signed: {exc}", markup=False)
        raise typer.Exit(1) from exc
    out.print(
        f"erased {erased.users} user(s): their personal data, in-app texts, objection reasons, "
        f"{erased.files} outbox file(s) and pseudonym secrets; recorded in "
        f"{len(erased.campaigns)} campaign log(s)",
        markup=False,
    )
