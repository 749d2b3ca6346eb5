import pytest

from engine.delivery.tokens import Keys
from engine.evidence.redaction import redact_addresses

KEYS = Keys(b"k" * 32)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("550 5.1.1 <ann@example.org>: Recipient address rejected", id="postfix"),
        pytest.param(
            "550-5.1.1 The email account that you tried to reach does not exist. ann@example.org",
            id="gmail",
        ),
        pytest.param('553 5.1.3 "ann smith"@example.org... User address required', id="quoted"),
        pytest.param(
            "550 Requested action not taken: mailbox unavailable (ANN@EXAMPLE.ORG)", id="upper"
        ),
        pytest.param(
            "5.1.1 RESOLVER.ADR.RecipNotFound; not found ;ann+tag@sub.example.org", id="exchange"
        ),
    ],
)
def test_redact_addresses_leaves_no_address(reply):
    redacted = redact_addresses(reply, KEYS.email_hash)
    assert "@" not in redacted
    assert "example.org" not in redacted.lower()
    assert "addr:" in redacted


def test_redact_addresses_is_the_keyed_hash_of_the_address():
    redacted = redact_addresses("550 <Ann@Example.org> rejected", KEYS.email_hash)
    assert f"addr:{KEYS.email_hash('ann@example.org')[:16]}" in redacted
    assert redact_addresses("250 2.0.0 Ok: queued as 4XyZ", KEYS.email_hash) == (
        "250 2.0.0 Ok: queued as 4XyZ"
    )
