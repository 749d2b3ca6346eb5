import base64

from engine.delivery.tokens import Keys

KEYS = Keys(b"a-test-secret-of-enough-length")


def test_token_is_stable_opaque_and_verifiable():
    token_id = KEYS.token_id("ai-training-notice", "user-42")
    token = KEYS.token(token_id)
    assert KEYS.token(KEYS.token_id("ai-training-notice", "user-42")) == token
    assert KEYS.verify_token(token) == token_id
    decoded = base64.urlsafe_b64decode(token_id + "==")
    assert b"user-42" not in decoded
    assert "user-42" not in token


def test_tampered_or_foreign_token_is_refused():
    token = KEYS.token(KEYS.token_id("c", "u"))
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert KEYS.verify_token(tampered) is None
    assert Keys(b"another-secret-entirely-here").verify_token(token) is None


def test_message_id_is_deterministic_per_delivery():
    first = KEYS.message_id("c", 7, "example.com")
    assert first == KEYS.message_id("c", 7, "example.com")
    assert first != KEYS.message_id("c", 8, "example.com")
    assert first.startswith("<")
    assert first.endswith("@example.com>")


def test_email_hash_is_keyed_and_case_insensitive():
    assert KEYS.email_hash("Anna@Example.com") == KEYS.email_hash("anna@example.com")
    assert Keys(b"another-secret-entirely-here").email_hash("anna@example.com") != KEYS.email_hash(
        "anna@example.com"
    )
