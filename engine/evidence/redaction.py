"""Keeping addresses out of the evidence. Pure: no I/O.

SMTP replies and DSN diagnostics often quote the recipient ("550 5.1.1 <ann@example.org>:
Recipient address rejected"). Evidence keeps such text, because the reply is what proves a
hand-over or a refusal, but every address in it is replaced by a keyed hash, the same one
`recipients.jsonl` and receipts carry, so it stays provable on request and unreadable to
anyone without the key.
"""

import re
from collections.abc import Callable

# Deliberately generous: anything shaped like local@domain, with or without <>, quoted or
# not. A false positive only hides a word; a false negative leaks an address.
_ADDRESS = re.compile(
    r"""(?:"[^"\r\n]{0,128}"|[^\s<>()\[\]:;,@"'`]{1,256})@[^\s<>()\[\]:;,@"'`]{1,256}""",
)


def redact_addresses(text: str, keyed_hash: Callable[[str], str]) -> str:
    """`text` with every email address replaced by `addr:<first 16 hex of its keyed hash>`."""
    return _ADDRESS.sub(lambda m: f"addr:{keyed_hash(m.group(0).strip('.'))[:16]}", text)


def strip_addresses(text: str) -> str:
    """`text` with every address replaced by `<address>`: for the tables and the report,
    where replies are grouped by reason and an address would make each one unique."""
    return _ADDRESS.sub("address", text)
