"""Checkpoint lines, rotation statements and the signing key, as files (format v1)."""

import base64
import hashlib
import json
import re
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.canonical import Frontier, leaf_hash
from engine.errors import ConfigError
from engine.evidence.checkpoints import (
    Signer,
    append_line,
    checkpoint_file,
    make_checkpoint,
    make_rotation,
    read_checkpoints,
    read_rotations,
)

AT = "2024-05-01T12:00:00.750Z"


def tree(n: int) -> Frontier:
    frontier = Frontier()
    for i in range(n):
        frontier.append(leaf_hash(str(i).encode()))
    return frontier


@pytest.fixture
def signer(tmp_path):
    return Signer.create(tmp_path / "keys" / "signing.pem")


def write(folder, signer, *sizes: int) -> None:
    path = checkpoint_file(folder, "c1")
    previous = None
    for size in sizes:
        append_line(path, make_checkpoint(signer, "c1", tree(size), AT, previous))
        previous = list(read_checkpoints(path))[-1]


# -- the key -----------------------------------------------------------------------------


def test_key_file_is_created_owner_only_and_reused(tmp_path, signer):
    path = tmp_path / "keys" / "signing.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    again = Signer.load(path)
    assert again.public_key == signer.public_key
    assert again.sign(b"data") == signer.sign(b"data")  # Ed25519 signatures are deterministic
    assert [p.name for p in path.parent.iterdir()] == ["signing.pem"]  # no temp file left
    assert signer.fingerprint == hashlib.sha256(signer.public_key).hexdigest()


def test_concurrent_creation_yields_one_key(tmp_path):
    for attempt in range(5):
        path = tmp_path / f"key{attempt}.pem"
        with ThreadPoolExecutor(8) as pool:
            signers = list(pool.map(Signer.create, [path] * 8))
        assert len({s.public_key for s in signers}) == 1


def test_key_file_readable_by_others_is_refused(tmp_path, signer):
    path = tmp_path / "keys" / "signing.pem"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=f"permissions 644; .*{re.escape(f'chmod 600 {path}')}"):
        Signer.load(path)


@pytest.mark.parametrize(
    "content",
    [
        b"garbage\n",
        b"",
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ],
    ids=["garbage", "empty", "not-ed25519"],
)
def test_unusable_key_file_is_refused(tmp_path, content):
    path = tmp_path / "signing.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        Signer.load(path)


# -- lines -------------------------------------------------------------------------------


def test_checkpoint_line_is_verifiable_from_the_spec_alone(tmp_path, signer):
    """docs/evidence.md §4: the signature covers a context line and the RFC 8785 bytes of
    every field but `sig`; `prev` is the SHA-256 of the previous line."""
    write(tmp_path, signer, 3, 5)
    first, second = (tmp_path / "c1.jsonl").read_bytes().splitlines()
    for raw in (first, second):
        record = json.loads(raw)
        assert raw == json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        fields = {k: v for k, v in record.items() if k != "sig"}
        signed = b"herald checkpoint v1\n" + json.dumps(
            fields, sort_keys=True, separators=(",", ":")
        ).encode("utf-8")
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(record["key"]))
        key.verify(base64.b64decode(record["sig"]), signed)  # raises if it does not hold
    assert json.loads(first)["prev"] is None
    assert json.loads(second)["prev"] == hashlib.sha256(first).hexdigest()
    assert json.loads(second)["root"] == tree(5).root().hex()
    assert stat.S_IMODE((tmp_path / "c1.jsonl").stat().st_mode) == 0o600


def test_rotation_is_signed_by_both_keys(tmp_path, signer):
    new = Signer.create(tmp_path / "new.pem")
    append_line(tmp_path / "keys.jsonl", make_rotation(signer, new, AT))
    [rotation] = read_rotations(tmp_path / "keys.jsonl")
    assert (rotation.old, rotation.new, rotation.valid) == (signer.public_key, new.public_key, True)
    text = (
        (tmp_path / "keys.jsonl")
        .read_text()
        .replace(
            base64.b64encode(new.public_key).decode(),
            base64.b64encode(Signer.create(tmp_path / "evil.pem").public_key).decode(),
        )
    )
    (tmp_path / "keys.jsonl").write_text(text)
    assert [r.valid for r in read_rotations(tmp_path / "keys.jsonl")] == [False]


def test_a_torn_last_line_is_read_past_and_cut_off_by_the_next_append(tmp_path, signer):
    """A crash in the middle of a write: what it left was never a checkpoint. Kept, it
    would sit mid-file once the next line is appended and break the file for good."""
    write(tmp_path, signer, 1)
    path = tmp_path / "c1.jsonl"
    with path.open("a") as fp:
        fp.write('{"campaign": "c1", "size": 2, "ro')  # a crash in the middle of a write
    assert [c.size for c in read_checkpoints(path)] == [1]
    append_line(path, make_checkpoint(signer, "c1", tree(2), AT, None))
    assert [c.size for c in read_checkpoints(path)] == [1, 2]
    assert path.read_text().count("\n") == 2


def test_a_last_line_whole_but_for_its_end_is_kept(tmp_path, signer):
    write(tmp_path, signer, 1)
    path = tmp_path / "c1.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the crash came before the newline
    append_line(path, make_checkpoint(signer, "c1", tree(2), AT, None))
    assert [c.size for c in read_checkpoints(path)] == [1, 2]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not a JSON line"),
        ("[1, 2]", "expected the keys"),
        ('{"campaign": "c1"}', "expected the keys"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, signer, line, problem):
    write(tmp_path, signer, 1)
    path = tmp_path / "c1.jsonl"
    with path.open("a") as fp:
        fp.write(line + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: {problem}")):
        list(read_checkpoints(path))


def test_size_must_be_an_integer(tmp_path, signer):
    write(tmp_path, signer, 1)
    path = tmp_path / "c1.jsonl"
    path.write_text(path.read_text().replace('"size":1', '"size":"1"'))
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: 'size' has the wrong type")):
        list(read_checkpoints(path))


@pytest.mark.parametrize("campaign", ["", "../escape", "a/b", ".hidden"])
def test_campaign_id_that_cannot_name_a_file_is_refused(tmp_path, campaign):
    with pytest.raises(ValueError, match="cannot name a checkpoint file"):
        checkpoint_file(tmp_path, campaign)
