import base64
import hashlib
import json
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.errors import ConfigError
from engine.evidence.checkpoints import (
    Checkpoint,
    Signer,
    check_checkpoints,
    read_checkpoints,
    write_checkpoints,
)

AT = 1_714_564_800.75  # 2024-05-01T12:00:00.75Z


def chain(n: int) -> list[tuple[int, str]]:
    return [(seq, hashlib.sha256(str(seq).encode()).hexdigest()) for seq in range(1, n + 1)]


@pytest.fixture
def signer(tmp_path):
    return Signer.load_or_create(tmp_path / "keys" / "checkpoint.pem")


def checkpoints_at(tmp_path, signer, *seqs: int) -> list[Checkpoint]:
    folder = tmp_path / "checkpoints"
    events = dict(chain(max(seqs)))
    for seq in seqs:
        write_checkpoints(folder, signer, {"c1": (seq, events[seq])}, AT)
    return list(read_checkpoints(folder, "c1"))


# -- the key -----------------------------------------------------------------------------


def test_key_file_is_created_owner_only_and_reused(tmp_path, signer):
    path = tmp_path / "keys" / "checkpoint.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    again = Signer.load_or_create(path)
    assert again.public_key_pem == signer.public_key_pem
    assert again.sign(b"data") == signer.sign(b"data")  # Ed25519 signatures are deterministic
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pem"]  # no temp file left


def test_concurrent_creation_yields_one_key(tmp_path):
    for attempt in range(5):
        path = tmp_path / f"key{attempt}.pem"
        with ThreadPoolExecutor(8) as pool:
            signers = list(pool.map(Signer.load_or_create, [path] * 8))
        assert len({s.public_key_pem for s in signers}) == 1


def test_key_file_readable_by_others_is_refused(tmp_path, signer):
    path = tmp_path / "keys" / "checkpoint.pem"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=f"permissions 644; .*{re.escape(f'chmod 600 {path}')}"):
        Signer.load_or_create(path)


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
    path = tmp_path / "checkpoint.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        Signer.load_or_create(path)


# -- writing and reading -----------------------------------------------------------------


def test_write_appends_only_changed_heads(tmp_path, signer):
    folder = tmp_path / "checkpoints"
    events = chain(10)
    heads = {"c1": events[2], "c2": events[4]}
    assert write_checkpoints(folder, signer, heads, AT) == 2
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert write_checkpoints(folder, signer, heads, AT + 60) == 0
    assert write_checkpoints(folder, signer, {**heads, "c1": events[7]}, AT + 60) == 1

    c1 = list(read_checkpoints(folder, "c1"))
    assert [(cp.line, cp.seq, cp.hash) for cp in c1] == [(1, 3, events[2][1]), (2, 8, events[7][1])]
    assert [cp.at for cp in c1] == ["2024-05-01T12:00:00Z", "2024-05-01T12:01:00Z"]
    assert [cp.seq for cp in read_checkpoints(folder, "c2")] == [5]
    assert list(read_checkpoints(folder, "c3")) == []


def test_line_is_verifiable_without_herald(tmp_path, signer):
    folder = tmp_path / "checkpoints"
    write_checkpoints(folder, signer, {"c1": (3, "ab" * 32)}, AT)
    record = json.loads((folder / "c1.jsonl").read_text())
    assert list(record) == ["campaign", "seq", "hash", "at", "public_key", "signature"]
    assert record["public_key"] == signer.public_key_pem
    signed = {"at": "2024-05-01T12:00:00Z", "campaign": "c1", "hash": "ab" * 32, "seq": 3}
    key = serialization.load_pem_public_key(record["public_key"].encode())
    assert isinstance(key, Ed25519PublicKey)
    key.verify(
        base64.b64decode(record["signature"]),
        json.dumps(signed, sort_keys=True, separators=(",", ":")).encode(),
    )


def test_last_line_of_a_long_file_is_found(tmp_path, signer):
    folder = tmp_path / "checkpoints"
    events = chain(40)
    for event in events:
        assert write_checkpoints(folder, signer, {"c1": event}, AT) == 1
    assert (folder / "c1.jsonl").stat().st_size > 3 * 4096
    assert write_checkpoints(folder, signer, {"c1": events[-1]}, AT) == 0
    assert write_checkpoints(folder, signer, {"c1": events[-2]}, AT) == 1


def test_torn_last_line_is_kept_apart_and_reported(tmp_path, signer):
    folder = tmp_path / "checkpoints"
    write_checkpoints(folder, signer, {"c1": (1, "a" * 64)}, AT)
    with (folder / "c1.jsonl").open("a") as fp:
        fp.write('{"campaign": "c1", "seq": 2, "ha')  # a crash in the middle of a write
    assert write_checkpoints(folder, signer, {"c1": (2, "b" * 64)}, AT) == 1
    lines = (folder / "c1.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["seq"] == 2
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'c1.jsonl'}:2: not a JSON line")):
        list(read_checkpoints(folder, "c1"))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not a JSON line"),
        ("[1, 2]", "not a JSON object"),
        ('{"campaign": "c1"}', "'seq' missing or not a int"),
        ("{}", "'campaign' missing or not a str"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, signer, line, problem):
    folder = tmp_path / "checkpoints"
    write_checkpoints(folder, signer, {"c1": (1, "a" * 64)}, AT)
    with (folder / "c1.jsonl").open("a") as fp:
        fp.write(line + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'c1.jsonl'}:2: {problem}")):
        list(read_checkpoints(folder, "c1"))


def test_seq_must_be_an_integer(tmp_path, signer):
    folder = tmp_path / "checkpoints"
    write_checkpoints(folder, signer, {"c1": (1, "a" * 64)}, AT)
    path = folder / "c1.jsonl"
    path.write_text(path.read_text().replace('"seq": 1', '"seq": "1"'))
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: 'seq' missing or not a int")):
        list(read_checkpoints(folder, "c1"))


def test_checkpoint_of_another_campaign_is_refused(tmp_path, signer):
    folder = tmp_path / "checkpoints"
    write_checkpoints(folder, signer, {"c1": (1, "a" * 64)}, AT)
    (folder / "c1.jsonl").rename(folder / "c2.jsonl")
    with pytest.raises(ValueError, match="c2.jsonl:1: checkpoint of campaign 'c1'"):
        list(read_checkpoints(folder, "c2"))


@pytest.mark.parametrize("campaign", ["", "../escape", "a/b", ".hidden"])
def test_campaign_id_that_cannot_name_a_file_is_refused(tmp_path, signer, campaign):
    with pytest.raises(ValueError, match="cannot name a checkpoint file"):
        write_checkpoints(tmp_path, signer, {campaign: (1, "a" * 64)}, AT)


# -- checking ----------------------------------------------------------------------------


def test_honest_chain_passes(tmp_path, signer):
    checkpoints = checkpoints_at(tmp_path, signer, 3, 3, 7, 10)
    assert len(checkpoints) == 3  # the repeated head was not written twice
    assert check_checkpoints(checkpoints, chain(10)) is None
    assert check_checkpoints(checkpoints, chain(12), signer.public_key_pem) is None
    assert check_checkpoints(iter(checkpoints), iter(chain(10))) is None
    assert check_checkpoints([], []) is None


def test_rewritten_event_at_a_checkpoint_is_detected(tmp_path, signer):
    checkpoints = checkpoints_at(tmp_path, signer, 3, 7)
    events = chain(10)
    signed = events[6][1]
    events[6] = (7, "f" * 64)
    assert check_checkpoints(checkpoints, events) == (
        f"checkpoint line 2 (seq 7): the event there now hashes to {'f' * 12}…, "
        f"the checkpoint signed {signed[:12]}…"
    )


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (chain(5), "checkpoint line 2 (seq 7): the chain ends at seq 5"),
        ([], "checkpoint line 1 (seq 3): the chain has no events"),
        (
            [e for e in chain(10) if e[0] != 7],
            "checkpoint line 2 (seq 7): the chain has no event at that seq (next is seq 8)",
        ),
    ],
    ids=["truncated", "emptied", "event-removed"],
)
def test_chain_cut_below_a_checkpoint_is_detected(tmp_path, signer, events, message):
    checkpoints = checkpoints_at(tmp_path, signer, 3, 7)
    assert check_checkpoints(checkpoints, events) == message


@pytest.mark.parametrize(
    "edit",
    [
        {"hash": "f" * 64},
        {"seq": 2},
        {"at": "2030-01-01T00:00:00Z"},
        {"signature": "not base64!"},
        {"signature": base64.b64encode(b"\0" * 64).decode()},
    ],
    ids=["hash", "seq", "at", "signature-garbage", "signature-forged"],
)
def test_edited_checkpoint_line_is_detected(tmp_path, signer, edit):
    folder = tmp_path / "checkpoints"
    checkpoints_at(tmp_path, signer, 3, 7)
    path = folder / "c1.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), **edit})
    path.write_text("\n".join(lines) + "\n")
    assert check_checkpoints(read_checkpoints(folder, "c1"), chain(10)) == (
        "checkpoint line 2: bad signature"
    )


def test_checkpoint_signed_by_another_key_is_detected(tmp_path, signer):
    intruder = Signer.load_or_create(tmp_path / "intruder.pem")
    checkpoints = checkpoints_at(tmp_path, signer, 3)
    checkpoints += checkpoints_at(tmp_path / "other", intruder, 7)
    checkpoints[1] = replace(checkpoints[1], line=2)
    assert check_checkpoints(checkpoints, chain(10)) is None  # valid, but by whom?
    assert check_checkpoints(checkpoints, chain(10), signer.public_key_pem) == (
        "checkpoint line 2: signed by a key other than the trusted one"
    )


def test_unusable_trusted_key_is_a_config_error(tmp_path, signer):
    with pytest.raises(ConfigError, match="trusted checkpoint key"):
        check_checkpoints([], [], "not a key")


def test_seq_going_backwards_is_detected(tmp_path, signer):
    checkpoints = checkpoints_at(tmp_path, signer, 3, 7, 5)
    assert check_checkpoints(checkpoints, chain(10)) == (
        "checkpoint line 3 (seq 5): seq goes backwards (line 2 has seq 7)"
    )
