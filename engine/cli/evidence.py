"""Evidence commands: verify the tamper-evident record. I/O: database, checkpoint files."""

from typing import Annotated

import typer

from engine.cli.common import app, err, fail, open_store, out
from engine.errors import ConfigError

evidence_app = typer.Typer(help="Check the tamper-evident record.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("verify")
def evidence_verify(
    db: Annotated[bool, typer.Option("--db", help="Re-check the chain in the database.")] = False,
) -> None:
    """Re-check every campaign's hash chain; exit 1 naming the first broken record."""
    # Imported here so that `herald --help` starts without the database (see cli/common.py).
    from engine.evidence.chain import verify_chain
    from engine.evidence.checkpoints import Signer, check_checkpoints, read_checkpoints
    from engine.store.events import chain_heads, iter_events

    if not db:
        raise typer.BadParameter("give --db (verifying an exported directory comes later)")
    settings, engine = open_store(create=False)  # never a new, empty database
    heads = chain_heads(engine)
    trusted = None
    if settings.signing_key.exists():
        try:
            trusted = Signer.load_or_create(settings.signing_key).public_key_pem
        except ConfigError as exc:
            fail(str(exc))
    broken = False
    for campaign_id in sorted(heads):
        problem = verify_chain(iter_events(engine, campaign_id), heads[campaign_id])
        if problem:
            broken = True
            err.print(f"BROKEN {problem}", markup=False)
            continue
        chain = ((e["seq"], e["hash"]) for e in iter_events(engine, campaign_id))
        try:
            checkpoints = list(read_checkpoints(settings.checkpoints, campaign_id))
            mismatch = check_checkpoints(checkpoints, chain, trusted)
        except ValueError as exc:
            mismatch = str(exc)
        if mismatch:
            broken = True
            where = settings.checkpoints / f"{campaign_id}.jsonl"
            err.print(f"BROKEN {campaign_id}: {where}: {mismatch}", markup=False)
            continue
        signed = f", {len(checkpoints)} signed checkpoint(s) match" if checkpoints else ""
        out.print(
            f"OK {campaign_id}: {heads[campaign_id][0]} events, chain intact{signed}",
            markup=False,
        )
    if broken:
        raise typer.Exit(1)
