"""Signed checkpoints (tree heads) and key rotations: their bytes, reading and writing.
I/O: files.

A checkpoint signs one campaign's Merkle tree at one size with an Ed25519 key kept outside
the database, and names the previous checkpoint's hash, so the file is itself a chain.
Each campaign has an append-only `<campaign>.jsonl` under var/checkpoints/ (and at the
witness); `keys.jsonl` holds key rotations, each signed by the old key and the new.
docs/evidence.md fixes every byte.
"""

import base64
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.canonical import FORMAT, Frontier, canonical
from engine.config import require_private
from engine.errors import ConfigError

CHECKPOINT_CONTEXT = b"herald checkpoint v1\n"
ROTATION_CONTEXT = b"herald key rotation v1\n"
KEYS_FILE = "keys.jsonl"
_Fields = Mapping[str, type | tuple[type, ...]]
_CHECKPOINT_FIELDS: _Fields = {"v": int, "campaign": str, "size": int, "root": str, "at": str,
                      "prev": (str, type(None)), "range": list, "key": str, "sig": str}  # fmt: skip
_ROTATION_FIELDS: _Fields = {"v": int, "type": str, "old": str, "new": str, "at": str,
                    "sig_old": str, "sig_new": str}  # fmt: skip


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of the raw 32-byte Ed25519 public key, in hex: how people name a key."""
    return hashlib.sha256(public_key).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class Signer:
    """An Ed25519 private key that signs checkpoints."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key().public_bytes_raw()

    @classmethod
    def load(cls, path: Path) -> "Signer":
        """Read the PEM (PKCS8) key file; refuses a file that others can read."""
        require_private(path)
        try:
            loaded = ser.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            loaded = None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds no Ed25519 private key (PEM, PKCS8, unencrypted)")
        return cls(loaded)

    @classmethod
    def create(cls, path: Path) -> "Signer":
        """A new key written 0600 (to a private temporary file, then linked into place, so
        nobody reads half a key); if another process won the race, theirs is read."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return cls.load(path)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def public_key_pem(self) -> str:
        key = self._key.public_key()
        pem = key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        return pem.decode("ascii")

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def public_key_from_pem(pem: bytes) -> bytes:
    """The raw Ed25519 public key in a PEM file (a public key, or a private one)."""
    try:
        key: Any = ser.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = ser.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("not an Ed25519 public key in PEM")
    return key.public_bytes_raw()


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Checkpoint:
    campaign: str
    size: int
    root: str
    at: str
    prev: str | None
    range: tuple[str, ...]
    key: str
    sig: str
    line: int  # 1-based line number in its file
    digest: str  # SHA-256 of the line's bytes: what the next checkpoint's `prev` names

    def signed_bytes(self) -> bytes:
        return CHECKPOINT_CONTEXT + canonical(self.fields())

    def fields(self) -> dict[str, Any]:
        return {
            "v": FORMAT,
            "campaign": self.campaign,
            "size": self.size,
            "root": self.root,
            "at": self.at,
            "prev": self.prev,
            "range": list(self.range),
            "key": self.key,
        }

    def frontier(self) -> Frontier:
        return Frontier(self.size, [bytes.fromhex(h) for h in self.range])


def make_checkpoint(
    signer: Signer, campaign: str, tree: Frontier, at: str, previous: Checkpoint | None
) -> bytes:
    """The line (canonical JSON, no newline) of a new checkpoint."""
    fields = {
        "v": FORMAT,
        "campaign": campaign,
        "size": tree.size,
        "root": tree.root().hex(),
        "at": at,
        "prev": previous.digest if previous else None,
        "range": [h.hex() for h in tree.hashes],
        "key": b64(signer.public_key),
    }
    sig = signer.sign(CHECKPOINT_CONTEXT + canonical(fields))
    return canonical({**fields, "sig": b64(sig)})


def make_rotation(old: Signer, new: Signer, at: str) -> bytes:
    fields = {"v": FORMAT, "type": "rotation", "old": b64(old.public_key),
              "new": b64(new.public_key), "at": at}  # fmt: skip
    signed = ROTATION_CONTEXT + canonical(fields)
    return canonical({**fields, "sig_old": b64(old.sign(signed)), "sig_new": b64(new.sign(signed))})


def checkpoint_file(folder: Path, campaign_id: str) -> Path:
    if not campaign_id or campaign_id[0] == "." or any(c in campaign_id for c in "/\\\0"):
        raise ValueError(f"campaign id {campaign_id!r} cannot name a checkpoint file")
    return folder / f"{campaign_id}.jsonl"


def read_checkpoints(path: Path) -> Iterator[Checkpoint]:
    """Stream a checkpoint file (nothing if it is missing). ValueError names a malformed
    line; signatures and links are checked by the verifier, not here."""
    for number, raw, record in _records(path, _CHECKPOINT_FIELDS):
        if not all(isinstance(h, str) for h in record["range"]):
            raise ValueError(f"{path}:{number}: 'range' must hold hex strings")
        yield Checkpoint(
            **{k: record[k] for k in ("campaign", "size", "root", "at", "prev", "key", "sig")},
            range=tuple(record["range"]),
            line=number,
            digest=hashlib.sha256(raw).hexdigest(),
        )


@dataclass(frozen=True)
class Rotation:
    old: bytes
    new: bytes
    at: str
    line: int
    valid: bool  # both signatures hold


def read_rotations(path: Path) -> Iterator[Rotation]:
    for number, _raw, record in _records(path, _ROTATION_FIELDS):
        fields = {k: record[k] for k in ("v", "type", "old", "new", "at")}
        signed = ROTATION_CONTEXT + canonical(fields)
        try:
            old, new = unb64(record["old"]), unb64(record["new"])
            sig_old, sig_new = unb64(record["sig_old"]), unb64(record["sig_new"])
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not base64 ({exc})") from None
        valid = verify_signature(old, sig_old, signed) and verify_signature(new, sig_new, signed)
        yield Rotation(old, new, record["at"], number, valid and record["type"] == "rotation")


def _records(path: Path, fields: _Fields) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    if not path.exists():
        return
    with path.open("rb") as fp:
        for number, line in enumerate(fp, 1):
            raw = line.rstrip(b"\n")
            try:
                record = json.loads(raw)
            except ValueError as exc:
                if not line.endswith(b"\n"):  # the last line, cut by a crash as it was
                    return  # written: never a checkpoint (the next append removes it)
                raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from None
            if not isinstance(record, dict) or set(record) != set(fields):
                raise ValueError(f"{path}:{number}: expected the keys {', '.join(fields)}")
            for name, kind in fields.items():
                value = record[name]
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise ValueError(f"{path}:{number}: {name!r} has the wrong type")
            if record["v"] != FORMAT:
                raise ValueError(f"{path}:{number}: format v{record['v']}, expected v{FORMAT}")
            yield number, raw, record


def last_checkpoint(path: Path) -> Checkpoint | None:
    last = None
    for last in read_checkpoints(path):  # noqa: B007 - a file holds one line per signing
        pass
    return last


def append_line(path: Path, line: bytes) -> None:
    """Append one line durably, whole or not at all: a write that fails (a full disk)
    is cut back off, and a last line a crash cut short as it was written (the file does
    not end with a newline, and what follows the last one is no JSON line) is removed
    first. Either would otherwise stay in the middle of the file and make it unreadable
    for good. A last line whole but for its newline gets it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        start, torn = _tail(fd)
        if torn and _is_json(torn):
            start, line = start + len(torn), b"\n" + line
        os.ftruncate(fd, start)
        try:
            data = line + b"\n"
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def whole_lines(path: Path) -> bytes:
    """The file as its readers take it: without a last line a crash cut short."""
    data = path.read_bytes()
    start = data.rfind(b"\n") + 1
    torn = data[start:]
    if not torn:
        return data
    return data + b"\n" if _is_json(torn) else data[:start]


def _tail(fd: int) -> tuple[int, bytes]:
    """Where the file's last newline ends it, and what follows (a line without its end)."""
    size = os.fstat(fd).st_size
    at = size
    while at > 0:
        chunk = os.pread(fd, min(at, 1 << 16), max(0, at - (1 << 16)))
        at -= len(chunk)
        if (cut := chunk.rfind(b"\n")) >= 0:
            start = at + cut + 1
            return start, os.pread(fd, size - start, start)
    return 0, os.pread(fd, size, 0)


def _is_json(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False
