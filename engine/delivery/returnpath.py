"""VERP return paths: a signed envelope sender per delivery, and reading one back. Pure.

`bounces@bounces.example.com` becomes `bounces+<id>-<tag>@bounces.example.com`, where
<id> is the delivery id in base 36 and <tag> a keyed MAC of it. A DSN comes back to that
address, so it names exactly one delivery; a forged or mangled address fails the MAC.
Everything is lower case: some MTAs fold the local part.
"""

import hmac
import re

from engine.delivery.tokens import Keys

_PURPOSE = "return-path"
_VERP = re.compile(
    r"^(?P<base>[^@+]+)\+(?P<id>[0-9a-z]{1,13})-(?P<tag>[0-9a-f]{20})@(?P<domain>.+)$"
)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def return_path(base: str, delivery_id: int, keys: Keys) -> str:
    """The envelope sender for one delivery, under `base` (local@domain)."""
    local, _, domain = base.rpartition("@")
    number = _base36(delivery_id)
    return f"{local}+{number}-{keys.tag(_PURPOSE, number)}@{domain}".lower()


def is_return_path(address: str) -> bool:
    """Shaped like one of ours (genuine or not)."""
    return _VERP.match(address.strip().strip("<>").lower()) is not None


def read_return_path(address: str, keys: Keys) -> int | None:
    """The delivery id inside a genuine return path; None when the address is not shaped
    like one, or its tag does not match (forged or mangled)."""
    found = _VERP.match(address.strip().strip("<>").lower())
    if found is None:
        return None
    number = found["id"]
    if not hmac.compare_digest(found["tag"], keys.tag(_PURPOSE, number)):
        return None
    return int(number, 36)


def _base36(value: int) -> str:
    if value < 0:
        raise ValueError("a delivery id is not negative")
    digits = ""
    while True:
        value, rest = divmod(value, 36)
        digits = _DIGITS[rest] + digits
        if not value:
            return digits
