"""Signed checkpoints of each campaign's chain head, kept outside the database. I/O: files.

The hash chain alone proves only that the events agree with each other: a database admin
who rewrites an event can recompute every hash after it. Each checkpoint line signs a
chain head (seq, hash) with an Ed25519 key kept outside the database, so such a rewrite
no longer matches a signature they cannot forge. The checkpoint folder (one append-only
`<campaign_id>.jsonl` per campaign) can live on another disk or be shipped off-host.
"""

import base64
import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.config import require_private
from engine.errors import ConfigError

_FIELDS = ("campaign", "seq", "hash", "at", "public_key", "signature")
_SIGNED = ("campaign", "seq", "hash", "at")


class Signer:
    """An Ed25519 key that signs checkpoints."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        pem = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        self._public_key_pem = pem.decode("ascii")

    @classmethod
    def load_or_create(cls, path: Path) -> "Signer":
        """Read the PEM (PKCS8) key file, creating it (0600) on first use; refuses a key file
        that others can read. A new key is written to a private temporary file, then linked
        into place: nobody reads a half-written key, and a creation race's loser reads the
        winner's."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fp:
                    fp.write(pem)
                    fp.flush()
                    os.fsync(fp.fileno())
                os.link(tmp, path)
            except FileExistsError:  # another process created it first
                pass
            finally:
                tmp.unlink(missing_ok=True)
        require_private(path)
        try:
            loaded = ser.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            loaded = None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds no Ed25519 private key (PEM, PKCS8, unencrypted)")
        return cls(loaded)

    @property
    def public_key_pem(self) -> str:
        return self._public_key_pem

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


@dataclass(frozen=True)
class Checkpoint:
    campaign: str
    seq: int
    hash: str
    at: str
    public_key: str
    signature: str
    line: int  # 1-based line number in its file


def write_checkpoints(
    folder: Path, signer: Signer, heads: Mapping[str, tuple[int, str]], at: float
) -> int:
    """Append a signed line per campaign whose head differs from its file's last line; count."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    when = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")
    written = 0
    for campaign, (seq, head) in sorted(heads.items()):
        path = _file(folder, campaign)
        last, ends_with_newline = _tail(path)
        if _head_of(last) == (seq, head):
            continue  # unchanged since the last checkpoint
        record: dict[str, Any] = {"campaign": campaign, "seq": seq, "hash": head}
        record["at"] = when.replace("+00:00", "Z")
        record["public_key"] = signer.public_key_pem
        record["signature"] = base64.b64encode(signer.sign(_signed_bytes(record))).decode()
        line = ("" if ends_with_newline else "\n") + json.dumps(record, ensure_ascii=False)
        with path.open("ab") as fp:  # a line torn by a crash stays its own (reported) line
            fp.write(f"{line}\n".encode())
            fp.flush()
            os.fsync(fp.fileno())
        written += 1
    return written


def read_checkpoints(folder: Path, campaign_id: str) -> Iterator[Checkpoint]:
    """Stream a campaign's checkpoints (none without a file); ValueError on a malformed line."""
    path = _file(folder, campaign_id)
    if not path.exists():
        return
    with path.open("rb") as fp:
        for number, raw in enumerate(fp, 1):
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: not a JSON object")
            for name in _FIELDS:
                kind = int if name == "seq" else str
                if not isinstance(record.get(name), kind) or isinstance(record[name], bool):
                    raise ValueError(f"{path}:{number}: {name!r} missing or not a {kind.__name__}")
            if record["campaign"] != campaign_id:
                raise ValueError(f"{path}:{number}: checkpoint of campaign {record['campaign']!r}")
            yield Checkpoint(**{name: record[name] for name in _FIELDS}, line=number)


def check_checkpoints(
    checkpoints: Iterable[Checkpoint],
    chain: Iterable[tuple[int, str]],
    trusted_key_pem: str | None = None,
) -> str | None:
    """Check checkpoints against the stored chain ((seq, hash) in seq order), streaming both.

    Returns None when every checkpoint holds, else a message naming the first problem."""
    trusted = None if trusted_key_pem is None else _public_key(trusted_key_pem)
    if trusted_key_pem is not None and trusted is None:
        raise ConfigError("the trusted checkpoint key is not an Ed25519 public key in PEM")
    keys: dict[str, Ed25519PublicKey | None] = {}
    events, event, previous = iter(chain), None, None
    for cp in checkpoints:
        where = f"checkpoint line {cp.line}"
        key = keys[cp.public_key] if cp.public_key in keys else _public_key(cp.public_key)
        keys[cp.public_key] = key
        if key is None:
            return f"{where}: its public key is not an Ed25519 key"
        if trusted is not None and key.public_bytes_raw() != trusted.public_bytes_raw():
            return f"{where}: signed by a key other than the trusted one"
        try:
            key.verify(base64.b64decode(cp.signature, validate=True), _signed_bytes(vars(cp)))
        except (ValueError, InvalidSignature):
            return f"{where}: bad signature"
        where += f" (seq {cp.seq})"
        if previous is not None and cp.seq < previous.seq:
            return f"{where}: seq goes backwards (line {previous.line} has seq {previous.seq})"
        previous = cp
        while event is None or event[0] < cp.seq:
            if (following := next(events, None)) is None:
                end = f"ends at seq {event[0]}" if event else "has no events"
                return f"{where}: the chain {end}"
            event = following
        if event[0] != cp.seq:
            return f"{where}: the chain has no event at that seq (next is seq {event[0]})"
        if event[1] != cp.hash:
            return (
                f"{where}: the event there now hashes to {event[1][:12]}…, "
                f"the checkpoint signed {cp.hash[:12]}…"
            )
    return None


def _file(folder: Path, campaign_id: str) -> Path:
    if not campaign_id or campaign_id[0] == "." or any(c in campaign_id for c in "/\\\0"):
        raise ValueError(f"campaign id {campaign_id!r} cannot name a checkpoint file")
    return folder / f"{campaign_id}.jsonl"


def _signed_bytes(fields: Mapping[str, Any]) -> bytes:
    body = {name: fields[name] for name in _SIGNED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _tail(path: Path, block: int = 4096) -> tuple[bytes | None, bool]:
    """The last non-empty line, read backwards from the end, and whether the file ends
    with a newline; (None, True) when the file is missing or empty."""
    if not path.exists():
        return None, True
    with path.open("rb") as fp:
        pos, tail = fp.seek(0, os.SEEK_END), b""
        while pos > 0:
            pos, step = max(pos - block, 0), min(block, pos)
            fp.seek(pos)
            tail = fp.read(step) + tail
            body = tail.rstrip(b"\n")
            if (cut := body.rfind(b"\n")) >= 0 or pos == 0:
                return body[cut + 1 :] or None, tail.endswith(b"\n")
    return None, True


def _head_of(line: bytes | None) -> tuple[object, object] | None:
    try:
        record = json.loads(line) if line else None
    except ValueError:
        return None
    return (record.get("seq"), record.get("hash")) if isinstance(record, dict) else None


def _public_key(pem: str) -> Ed25519PublicKey | None:
    try:
        key = ser.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None
