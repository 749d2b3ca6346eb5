"""Merkle proofs over a campaign's events, as RFC 9162 §2.1 defines them. Pure: no I/O.

Leaves are the events' canonical bytes hashed with `canonical.leaf_hash`. An inclusion
proof shows one event is in a signed tree without revealing any other; a consistency proof
shows a later tree extends an earlier one, so a checkpoint can only ever grow.
"""

from collections.abc import Sequence

from engine.canonical import EMPTY_ROOT, node_hash


class Leaves:
    """Leaf hashes in order, 32 bytes each in one buffer (a million events take 32 MB)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def append(self, leaf: bytes) -> None:
        self._buffer += leaf

    def __len__(self) -> int:
        return len(self._buffer) // 32

    def __getitem__(self, index: int) -> bytes:
        return bytes(self._buffer[index * 32 : index * 32 + 32])


def mth(leaves: Leaves | Sequence[bytes], start: int = 0, end: int | None = None) -> bytes:
    """MTH(D[start:end]), RFC 9162 §2.1.1."""
    end = len(leaves) if end is None else end
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[start]
    k = _split(n)
    return node_hash(mth(leaves, start, start + k), mth(leaves, start + k, end))


def inclusion_proof(leaves: Leaves | Sequence[bytes], index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]), RFC 9162 §2.1.3.1."""
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of {size}")
    return _path(leaves, index, 0, size)


def _path(leaves: Leaves | Sequence[bytes], m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(leaves, m, start, start + k), mth(leaves, start + k, end)]
    return [*_path(leaves, m - k, start + k, end), mth(leaves, start, start + k)]


def consistency_proof(leaves: Leaves | Sequence[bytes], first: int, second: int) -> list[bytes]:
    """PROOF(first, D[0:second]), RFC 9162 §2.1.4.1."""
    if not 0 < first <= second <= len(leaves):
        raise ValueError(f"no consistency proof from {first} to {second}")
    return _subproof(leaves, first, 0, second, True)


def _subproof(
    leaves: Leaves | Sequence[bytes], m: int, start: int, end: int, whole: bool
) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [mth(leaves, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves, m, start, start + k, whole), mth(leaves, start + k, end)]
    return [*_subproof(leaves, m - k, start + k, end, False), mth(leaves, start, start + k)]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _up_the_right_edge(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if first > second or first <= 0:
        return first == second == 0 and not proof and first_root == second_root
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree's root is the first node
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                fn, sn = _up_the_right_edge(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


def _up_the_right_edge(fn: int, sn: int) -> tuple[int, int]:
    """RFC 9162's "right-shift fn and sn equally until either LSB(fn) is set or fn is 0"
    (the step both verifications take after a left sibling at the tree's right edge)."""
    while True:
        fn, sn = fn >> 1, sn >> 1
        if fn & 1 or fn == 0:
            return fn, sn


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)
