"""Every writer signs: checkpoints of each campaign's tree, with a key that is never
silently replaced. I/O: database, files, the witness.

A process that appends events calls `sign_heads` within 60 s of its first unsigned event
(`keep_signed` does it every 30 s) and once more when it stops. The new checkpoint is
computed from the previous one's compact range and the events after it, so it always
extends what was signed before, whatever the head row claims.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import Engine

from engine.canonical import Frontier, leaf_hash
from engine.config import Settings
from engine.errors import ConfigError, EngineError, EvidenceError
from engine.evidence.checkpoints import (
    KEYS_FILE,
    Checkpoint,
    Rotation,
    Signer,
    append_line,
    checkpoint_file,
    last_checkpoint,
    make_checkpoint,
    make_rotation,
    read_rotations,
    unb64,
    verify_signature,
)
from engine.evidence.witness import flush_witness, queue_for_witness
from engine.store.events import iso, iter_events, tree_heads

log = logging.getLogger(__name__)


def signer_for(settings: Settings) -> Signer:
    """The signing key. Made on first use only: once any checkpoint exists, a missing key
    is refused, never replaced (a new key would re-sign whatever the database says)."""
    path = settings.signing_key
    if path.exists():
        return Signer.load(path)
    signed = _signed_files(settings.checkpoints)
    if settings.witness and Path(settings.witness).is_dir():
        signed += _signed_files(Path(settings.witness))
    if signed:
        raise ConfigError(
            f"the signing key {path} is missing, but {signed[0]} holds checkpoints it "
            "signed: restore the key file (Herald never makes a new key silently)"
        )
    return Signer.create(path)


def _signed_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jsonl") if p.name != KEYS_FILE and p.stat().st_size)


def trusted_keys(anchor: bytes, rotations: Iterable[Rotation]) -> set[bytes]:
    """The anchor and every key it was rotated to, statement by statement."""
    keys = {anchor}
    for rotation in rotations:
        if rotation.valid and rotation.old in keys:
            keys.add(rotation.new)
    return keys


def sign_heads(settings: Settings, engine: Engine, now: float | None = None) -> int:
    """Sign every campaign whose events grew since its last checkpoint; how many."""
    signer = signer_for(settings)
    folder = settings.checkpoints
    at = iso(time.time() if now is None else now)
    with _locked(folder):
        return _sign_all(settings, engine, signer, folder, at)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One signer at a time on this host, and on every host that shares the folder
    (HERALD_CHECKPOINTS on a mount with file locks): each new line names the line before."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep checkpoints in {folder} (HERALD_CHECKPOINTS, default var/checkpoints): "
            f"{exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sign_all(settings: Settings, engine: Engine, signer: Signer, folder: Path, at: str) -> int:
    signed = 0
    for campaign, (size, _root) in sorted(tree_heads(engine).items()):
        path = checkpoint_file(folder, campaign)
        last = last_checkpoint(path)
        if last is not None and last.size == size:
            continue
        tree = _extend(engine, campaign, last, signer, folder)
        if last is not None and tree.size == last.size:
            continue
        line = make_checkpoint(signer, campaign, tree, at, last)
        try:
            append_line(path, line)
        except OSError as exc:  # a full disk, a file made read-only: nothing half written
            raise EvidenceError(
                f"cannot write the signed checkpoint to {path}: {exc.strerror or exc}. "
                "The log is intact and nothing was signed; the next command that writes "
                "signs what is unsigned"
            ) from exc
        if settings.witness:
            queue_for_witness(folder, path.name, line)
        signed += 1
    if settings.witness:
        flush_witness(settings.witness, folder)
    return signed


def _extend(
    engine: Engine, campaign: str, last: Checkpoint | None, signer: Signer, folder: Path
) -> Frontier:
    tree = Frontier()
    if last is not None:
        key = unb64(last.key)
        if signer.public_key not in trusted_keys(key, read_rotations(folder / KEYS_FILE)):
            raise ConfigError(
                f"{checkpoint_file(folder, campaign)}:{last.line} was signed by another key "
                f"than {signer.fingerprint[:16]}…; restore that key, or rotate from it with "
                "herald evidence rotate-key"
            )
        tree = last.frontier()
        if tree.root().hex() != last.root or not verify_signature(
            key, unb64(last.sig), last.signed_bytes()
        ):
            raise EvidenceError(
                f"{checkpoint_file(folder, campaign)}:{last.line}: the last checkpoint does "
                "not hold (bad signature or range): run herald evidence verify"
            )
    for event in iter_events(engine, campaign, after=tree.size):
        if event["seq"] != tree.size + 1:
            raise EvidenceError(
                f"campaign {campaign}: event seq {tree.size + 1} is missing; nothing signed"
            )
        tree.append(leaf_hash(event["body"].encode("utf-8")))
    if last is not None and tree.size < last.size:
        raise EvidenceError(f"campaign {campaign}: events after seq {tree.size} were removed")
    return tree


def rotate_key(settings: Settings, now: float | None = None) -> tuple[Signer, Signer]:
    """A new signing key, announced by a statement both keys sign (local and witness).
    The old key file is kept beside it as `<name>.retired-<fingerprint>` (0600)."""
    path = settings.signing_key
    if not path.exists():
        raise ConfigError(f"no signing key at {path} to rotate from")
    old = Signer.load(path)
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    new = Signer.create(fresh)
    line = make_rotation(old, new, iso(time.time() if now is None else now))
    append_line(settings.checkpoints / KEYS_FILE, line)
    if settings.witness:
        queue_for_witness(settings.checkpoints, KEYS_FILE, line)
        flush_witness(settings.witness, settings.checkpoints)
    path.rename(path.with_name(f"{path.name}.retired-{old.fingerprint[:16]}"))
    fresh.rename(path)
    return old, new


async def keep_signed(
    settings: Settings, engine: Engine, stop: asyncio.Event, every_s: float = 30.0
) -> None:
    """Sign every `every_s` seconds until `stop` is set, then once more. A failure is
    logged and tried again: it must not stop sending, and the stop's signing reports it."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(sign_heads, settings, engine)
        except EngineError as exc:
            log.error("checkpoint not written: %s", exc)
