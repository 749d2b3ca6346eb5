"""Evidence commands: verify the record, show and rotate the signing key. I/O: database,
checkpoint files, terminal."""

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from engine.cli.common import app, err, fail, open_store, out
from engine.errors import ConfigError
from engine.evidence.chain import verify_chain
from engine.evidence.checkpoints import fingerprint, public_key_from_pem
from engine.evidence.signing import rotate_key, signer_for
from engine.evidence.verify import (
    campaigns,
    record_verdicts,
    summary,
    trust_from,
    verify_campaign,
)
from engine.store.events import iso, iter_v0_events, v0_heads

evidence_app = typer.Typer(help="Check and anchor the tamper-evident record.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("verify")
def evidence_verify(
    db: Annotated[bool, typer.Option("--db", help="Verify the database's record.")] = False,
    public_key: Annotated[
        Path | None,
        typer.Option(help="The public key you kept off this machine (PEM): trust only it."),
    ] = None,
    witness: Annotated[
        Path | None,
        typer.Option(help="A witness directory: the database must extend every checkpoint."),
    ] = None,
    max_unsigned_age: Annotated[
        float | None,
        typer.Option(min=0, help="Fail if events stayed unsigned longer than this (seconds)."),
    ] = None,
) -> None:
    """Verify every campaign's events, checkpoints and tables; exit 1 naming what broke."""
    if not db:
        raise typer.BadParameter("give --db (the offline evidence pack comes later)")
    settings, engine = open_store()
    if witness is not None and not witness.is_dir():
        fail(f"{witness}: no such witness directory")
    try:
        if public_key is not None:
            anchor, pinned = public_key_from_pem(public_key.read_bytes()), True
        elif settings.signing_key.exists():
            anchor, pinned = signer_for(settings).public_key, False
        else:
            fail(f"no key to trust: {settings.signing_key} is missing; give --public-key")
    except (ConfigError, OSError) as exc:
        fail(f"{public_key or settings.signing_key}: {exc}")
    if not pinned:
        err.print(
            f"WARNING: trusting the local key {fingerprint(anchor)[:16]}… in "
            f"{settings.signing_key}; whoever controls this machine controls that key. "
            "Pin the key you kept elsewhere with --public-key.",
            markup=False,
        )
    trust = trust_from(anchor, pinned, settings.checkpoints, witness)
    now = dt.datetime.now(dt.UTC)
    broken = _verify_v0(engine)
    verdicts = []
    for campaign in campaigns(engine, settings.checkpoints, witness):
        verdict = verify_campaign(
            engine, campaign, trust, settings.checkpoints, witness, now, max_unsigned_age
        )
        verdicts.append(verdict)
        if verdict.ok:
            out.print(f"OK {campaign}: {summary(verdict)}", markup=False)
        else:
            broken = True
            err.print(f"BROKEN {campaign}: {verdict.problem}", markup=False)
    record_verdicts(settings.var / "verified", verdicts, trust, iso(now.timestamp()))
    if broken:
        raise typer.Exit(1)


def _verify_v0(engine: Engine) -> bool:
    """Campaigns logged before format v1: their hash chain alone, said as such."""
    broken = False
    for campaign, head in sorted(v0_heads(engine).items()):
        problem = verify_chain(iter_v0_events(engine, campaign), head)
        if problem:
            broken = True
            err.print(f"BROKEN {campaign} (format v0): {problem}", markup=False)
        else:
            out.print(
                f"OK {campaign}: {head[0]} events in format v0 (a hash chain without "
                "signed tree heads: new campaigns use format v1)",
                markup=False,
            )
    return broken


@evidence_app.command("public-key")
def evidence_public_key() -> None:
    """Print the public key that signs checkpoints (PEM), to keep off this machine."""
    settings, _ = open_store()
    try:
        signer = signer_for(settings)
    except ConfigError as exc:
        fail(str(exc))
    err.print(f"fingerprint (SHA-256 of the raw key): {signer.fingerprint}", markup=False)
    out.print(signer.public_key_pem.rstrip(), markup=False)


@evidence_app.command("rotate-key")
def evidence_rotate_key() -> None:
    """Make a new signing key; the old key signs a statement naming the new one."""
    settings, _ = open_store()
    try:
        old, new = rotate_key(settings)
    except ConfigError as exc:
        fail(str(exc))
    out.print(f"rotated: {old.fingerprint} -> {new.fingerprint}", markup=False)
    out.print(
        f"the statement is in {settings.checkpoints / 'keys.jsonl'}; keep the new public key "
        "(herald evidence public-key) where you kept the old one",
        markup=False,
    )
