"""Evidence commands: verify the record, packs and receipts; export; show and rotate the
signing key. I/O: database, checkpoint files, terminal.

Herald's modules are imported inside each command, so that `herald --help` starts without
loading the database, the templates or the cryptography (see cli/common.py).
"""

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

from engine.cli.common import app, err, fail, open_out, open_settings, open_store, out
from engine.errors import ConfigError, EngineError, EvidenceError

evidence_app = typer.Typer(help="Check and anchor the tamper-evident record.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("verify")
def evidence_verify(
    path: Annotated[
        Path | None, typer.Argument(help="An evidence pack (folder or .zip) or a receipt.")
    ] = None,
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
    """Verify the database (--db), a pack or a receipt; exit 1 naming what broke."""
    from engine.evidence.checkpoints import fingerprint, public_key_from_pem
    from engine.evidence.signing import signer_for
    from engine.evidence.verify import (
        campaigns,
        record_verdicts,
        summary,
        trust_from,
        verify_campaign,
    )
    from engine.store.events import iso

    if (path is None) == (not db):
        raise typer.BadParameter("give either --db or a PACK/RECEIPT path")
    if path is not None:
        _verify_offline(path, public_key, witness)
        return
    settings, engine = open_store(create=False)  # never a new, empty database
    if witness is not None and not witness.is_dir():
        fail(f"{witness}: no such witness directory")
    found = campaigns(engine, settings.checkpoints, witness)
    if not found and not _has_v0(engine):
        out.print("nothing to verify: no campaign has evidence in this database yet", markup=False)
        return
    try:
        if public_key is not None:
            anchor, pinned = public_key_from_pem(public_key.read_bytes()), True
        elif settings.signing_key.exists():
            anchor, pinned = signer_for(settings).public_key, False
        elif not any(settings.checkpoints.glob("*.jsonl")):
            fail(
                f"nothing is signed: no key at {settings.signing_key} and no checkpoint in "
                f"{settings.checkpoints}. Either nothing was signed here yet (a writer signs "
                "as it ends; a killed one does not: any command that writes signs what is "
                "unsigned), or the key and checkpoints were removed; give --public-key to "
                "check against the key you kept"
            )
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
    for campaign in found:
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


def _has_v0(engine: "Engine") -> bool:
    from engine.store.events import v0_heads

    return bool(v0_heads(engine))


def _verify_v0(engine: "Engine") -> bool:
    """Campaigns logged before format v1: their hash chain alone, said as such."""
    from engine.evidence.chain import verify_chain
    from engine.store.events import iter_v0_events, v0_heads

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
    from engine.evidence.signing import signer_for

    settings = open_settings()  # no database needed: a key can be pinned before launch
    try:
        signer = signer_for(settings)
    except ConfigError as exc:
        fail(str(exc))
    err.print(f"fingerprint (SHA-256 of the raw key): {signer.fingerprint}", markup=False)
    out.print(signer.public_key_pem.rstrip(), markup=False)


@evidence_app.command("rotate-key")
def evidence_rotate_key() -> None:
    """Make a new signing key; the old key signs a statement naming the new one."""
    from engine.evidence.signing import rotate_key

    settings = open_settings()
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


def _pinned(public_key: Path | None) -> bytes | None:
    from engine.evidence.checkpoints import public_key_from_pem

    if public_key is None:
        return None
    try:
        return public_key_from_pem(public_key.read_bytes())
    except (ConfigError, OSError) as exc:
        fail(f"{public_key}: {exc}")


def _verify_offline(path: Path, public_key: Path | None, witness: Path | None) -> None:
    """A pack or a receipt, with no database."""
    from engine.evidence.packcheck import check_pack
    from engine.evidence.receipts import check_receipt

    if not path.exists():
        fail(f"{path}: no such pack or receipt")
    pinned = _pinned(public_key)
    if pinned is None:
        err.print(
            "WARNING: no --public-key: trusting the key the evidence carries; pin the key the "
            "controller published to know who signed it",
            markup=False,
        )
    receipt = _receipt(path)
    if receipt is not None:
        problems = check_receipt(receipt, None if pinned is None else {pinned})
        for problem in problems:
            err.print(f"BROKEN {path}: {problem}", markup=False)
        if problems:
            raise typer.Exit(1)
        out.print(
            f"OK receipt of {receipt['user_id']} in {receipt['campaign']}: "
            f"{len(receipt['events'])} events included in the tree of "
            f"{receipt['checkpoint']['size']} signed at {receipt['checkpoint']['at']}",
            markup=False,
        )
        for message in receipt["messages"]:
            out.print(
                f"  {message['channel']} {message['at']}: {message['message_id']} "
                f"content {message['content_sha256']}",
                markup=False,
            )
        return
    if path.is_file() and path.suffix != ".zip":
        fail(f"{path}: neither a pack (a folder or a .zip) nor a receipt")
    verdict = check_pack(path, pinned, witness)
    if verdict.problem:
        err.print(f"BROKEN {path}: {verdict.problem}", markup=False)
        raise typer.Exit(1)
    out.print(
        f"OK {verdict.campaign}: manifest signed by {verdict.key[:16]}…, {verdict.events} "
        f"events under {verdict.checkpoints} checkpoint(s) ({verdict.unsigned} unsigned), "
        "recipients agree with the events",
        markup=False,
    )
    out.print("figure                                   from events   in report.json", markup=False)
    for figure, derived, stated in verdict.figures:
        out.print(f"{figure:<40} {derived!s:>12}   {stated!s:>12}", markup=False)


def _receipt(path: Path) -> dict[str, Any] | None:
    if not path.is_file() or path.suffix == ".zip":
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        fail(f"{path}: neither a pack nor a receipt (not JSON)")
    return data if isinstance(data, dict) and data.get("type") == "receipt" else None


@evidence_app.command("export")
def evidence_export(
    campaign: Annotated[str, typer.Argument(help="Campaign id.")],
    out_path: Annotated[Path, typer.Option("--out", help="A new folder, or FILE.zip.")],
) -> None:
    """Export a self-contained evidence pack that verifies offline."""
    from engine.delivery.tokens import Keys
    from engine.evidence.checkpoints import fingerprint, unb64
    from engine.evidence.pack import export_pack
    from engine.evidence.signing import sign_heads

    settings, engine = open_store(create=False)
    try:
        # What is unsigned (a send killed before its checkpoint, one still running) is
        # signed first, as any writer would, so the pack's events are all covered. Events
        # that do not extend the signed checkpoints are signed by no one: the pack is
        # made all the same, and its verifiers name what is wrong.
        try:
            sign_heads(settings, engine)
        except EvidenceError as exc:
            err.print(f"warning: nothing more was signed: {exc}", markup=False)
        manifest = export_pack(
            engine,
            settings,
            campaign,
            out_path,
            Keys(settings.secret).email_hash,
            on_warning=lambda warning: err.print(f"warning: {warning}", markup=False),
        )
    except (EngineError, FileNotFoundError) as exc:
        fail(str(exc))
    out.print(
        f"exported {campaign} to {out_path}: {len(manifest['files'])} files, manifest signed "
        f"by {fingerprint(unb64(manifest['key']))[:16]}…",
        markup=False,
    )


@evidence_app.command("receipt")
def evidence_receipt(
    campaign: Annotated[str, typer.Argument(help="Campaign id.")],
    user_id: Annotated[str, typer.Argument(help="The user's id.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write here, not to stdout.")
    ] = None,
) -> None:
    """One user's events with inclusion proofs against a signed checkpoint."""
    from engine.delivery.tokens import Keys
    from engine.evidence.receipts import make_receipt
    from engine.store.users import user_email

    settings, engine = open_store(create=False)
    email = user_email(engine, user_id)
    keys = Keys(settings.secret)
    try:
        receipt = make_receipt(
            engine,
            settings.checkpoints,
            campaign,
            user_id,
            keys.email_hash(email) if email else None,
        )
    except EngineError as exc:
        fail(str(exc))
    text = json.dumps(receipt, indent=2, ensure_ascii=False) + "\n"
    if out_path:
        with open_out(out_path) as fp:
            fp.write(text)
        out.print(f"receipt of {user_id} in {campaign}: {out_path}", markup=False)
    else:
        print(text, end="")  # noqa: T201 - machine-readable output
