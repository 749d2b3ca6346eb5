"""The bytes of the evidence: canonical JSON (RFC 8785) and Merkle hashing (RFC 9162). Pure.

docs/evidence.md fixes every byte; this module is its executable form for what the store
writes. Events hold only strings, integers, booleans, null, arrays and objects (times are
ISO 8601 strings, never floats), and for those values RFC 8785 is exactly `json.dumps` with
sorted keys, no whitespace and UTF-8: `canonical` uses that fast form, and
`is_canonical` checks stored bytes against the `rfc8785` package, the reference.
"""

import hashlib
import json
from typing import Any

import rfc8785

FORMAT = 1  # the evidence format written now; see docs/evidence.md
EMPTY_ROOT = hashlib.sha256(b"").digest()
# One encoder for every event: json.dumps with any option builds a new JSONEncoder per
# call, which cost a third of `canonical` (4.1 -> 2.7 µs an event, timeit).
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_sha256 = hashlib.sha256


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of `value`, which holds no floats. Raises ValueError on a float or
    on a string that is not valid Unicode (a lone surrogate)."""
    _refuse_floats(value)
    try:
        text = _ENCODE(value)
        body = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode: {exc}") from None
    if not text.isascii() and _has_astral_key(value):
        # RFC 8785 sorts keys by UTF-16 code units, Python by code points: they differ
        # only for keys beyond U+FFFF, which the reference implementation sorts right.
        return bytes(rfc8785.dumps(value))
    return body


def parse_canonical(body: bytes) -> Any:
    """The JSON value in `body` if `body` is exactly its RFC 8785 form, else None."""
    floats = False

    def saw_float(text: str) -> float:
        nonlocal floats
        floats = True
        return float(text)

    try:
        value = json.loads(body, parse_float=saw_float)
    except ValueError:
        return None
    try:
        if not floats and canonical(value) == body:
            return value
        return value if rfc8785.dumps(value) == body else None
    except (ValueError, rfc8785.CanonicalizationError):  # a lone surrogate, NaN...
        return None


def is_canonical(body: bytes) -> bool:
    """Whether `body` is exactly the RFC 8785 form of the JSON it holds."""
    return parse_canonical(body) is not None


def _has_astral_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(max(map(ord, k), default=0) > 0xFFFF or _has_astral_key(v)
                   for k, v in value.items())  # fmt: skip
    if isinstance(value, list):
        return any(_has_astral_key(v) for v in value)
    return False


def _refuse_floats(value: Any) -> None:
    """A plain loop, not a generator: this runs for every event written."""
    kind = type(value)
    if kind is float:
        raise ValueError("evidence holds no floats: use integers or ISO 8601 strings")
    if kind is dict:
        for item in value.values():
            if type(item) in _NESTED:
                _refuse_floats(item)
    elif kind is list:
        for item in value:
            if type(item) in _NESTED:
                _refuse_floats(item)


_NESTED = (dict, list, float)


def leaf_hash(body: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 ‖ entry)."""
    return _sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 ‖ left ‖ right)."""
    return _sha256(b"\x01" + left + right).digest()


class Frontier:
    """The roots of the perfect subtrees that make a tree of `size` leaves, largest first
    (a "compact range"): enough to append in O(log n) and to compute the root, so a writer
    never rereads the log. Stored with each campaign's head."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        if len(hashes or []) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} subtree roots")
        self.size, self.hashes = size, list(hashes or [])

    def append(self, leaf: bytes) -> None:
        self.hashes.append(leaf)
        size = self.size
        while size & 1:  # each trailing 1 bit of the old size is a subtree of equal size
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)
            size >>= 1
        self.size += 1

    def root(self) -> bytes:
        """RFC 9162 §2.1.1 MTH of the leaves so far (SHA-256 of nothing when empty)."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root

    def dump(self) -> str:
        return ",".join(h.hex() for h in self.hashes)

    @classmethod
    def load(cls, size: int, text: str) -> "Frontier":
        return cls(size, [bytes.fromhex(h) for h in text.split(",")] if text else [])
