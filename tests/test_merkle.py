"""The Merkle tree against RFC 6962's reference vectors and an independent implementation."""

import hashlib
import random

import pytest
from pymerkle import InmemoryTree

from engine.canonical import EMPTY_ROOT, Frontier, leaf_hash
from engine.evidence.merkle import (
    consistency_proof,
    inclusion_proof,
    mth,
    verify_consistency,
    verify_inclusion,
)

# The leaf inputs and roots of the RFC 6962 reference tests (certificate-transparency's
# merkle_tree_test, reused by transparency-dev/merkle): the published vectors.
INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
          "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in INPUTS]


@pytest.mark.parametrize("size", range(9))
def test_merkle_roots_match_the_rfc6962_vectors(size):
    frontier = Frontier()
    for leaf in LEAVES[:size]:
        frontier.append(leaf)
    assert frontier.root().hex() == ROOTS[size]
    assert mth(LEAVES[:size]).hex() == ROOTS[size]
    assert Frontier.load(size, frontier.dump()).root() == frontier.root()


def test_merkle_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_merkle_roots_match_pymerkle_at_every_size():
    rng = random.Random(7)
    entries = [rng.randbytes(rng.randrange(0, 40)) for _ in range(70)]
    tree = InmemoryTree(algorithm="sha256")
    frontier = Frontier()
    for n, entry in enumerate(entries, 1):
        tree.append_entry(entry)
        frontier.append(leaf_hash(entry))
        assert frontier.root() == tree.get_root(n), n


def test_merkle_every_inclusion_proof_verifies_and_no_tampered_one_does():
    for size in range(1, 20):
        root = mth(LEAVES * 3, 0, size)
        leaves = (LEAVES * 3)[:size]
        for index in range(size):
            proof = inclusion_proof(leaves, index, size)
            assert verify_inclusion(leaves[index], index, size, proof, root)
            if index + 1 < size and leaves[index + 1] != leaves[index]:
                assert not verify_inclusion(leaves[index + 1], index, size, proof, root)
            for i, node in enumerate(proof):
                bad = [*proof[:i], bytes([node[0] ^ 1]) + node[1:], *proof[i + 1 :]]
                assert not verify_inclusion(leaves[index], index, size, bad, root)
            assert not verify_inclusion(leaves[index], index, size, [*proof, root], root)


def test_merkle_every_consistency_proof_verifies_and_no_tampered_one_does():
    leaves = [leaf_hash(bytes([i])) for i in range(24)]
    for second in range(1, 24):
        for first in range(1, second + 1):
            proof = consistency_proof(leaves, first, second)
            r1, r2 = mth(leaves, 0, first), mth(leaves, 0, second)
            assert verify_consistency(first, second, proof, r1, r2), (first, second)
            assert not verify_consistency(first, second, proof, r2, r1) or r1 == r2
            for i, node in enumerate(proof):
                bad = [*proof[:i], bytes([node[0] ^ 1]) + node[1:], *proof[i + 1 :]]
                assert not verify_consistency(first, second, bad, r1, r2)
            if first < second:
                other = [*leaves[: first - 1], leaf_hash(b"forged"), *leaves[first:second]]
                assert not verify_consistency(first, second, proof, mth(other, 0, first), r2)


def test_merkle_proofs_match_the_published_audit_paths():
    # leaf 0 of the 8-leaf reference tree, and the consistency proof from size 1 to 8
    path = ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]  # fmt: skip
    assert [h.hex() for h in inclusion_proof(LEAVES, 0, 8)] == path
    assert [h.hex() for h in consistency_proof(LEAVES, 1, 8)] == path
    root = bytes.fromhex(ROOTS[8])
    assert verify_inclusion(LEAVES[0], 0, 8, [bytes.fromhex(h) for h in path], root)
