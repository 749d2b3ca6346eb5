"""Objection tokens, Message-IDs and keyed hashes, all derived from the secret. Pure.

A token is opaque: an HMAC-derived id (nothing decodable about the user) signed with
itsdangerous. The same campaign and user always get the same token, so a resent message
carries the same link; rotating the secret revokes every token.
"""

import base64
import functools
import hashlib
import hmac

from itsdangerous import BadSignature, Signer, TimestampSigner


class Keys:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._signer = _KeyedOnce(secret, salt="herald.objection")
        self._timed = _TimedKeyedOnce(secret, salt="herald.objection.timed")

    def _mac(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def token_id(self, campaign_id: str, user_id: str) -> str:
        raw = self._mac("token", f"{campaign_id}\0{user_id}")[:16]
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def token(self, token_id: str, *, timed: bool = False) -> str:
        signer = self._timed if timed else self._signer
        return signer.sign(token_id).decode()

    def verify_token(self, token: str, max_age_s: int | None = None) -> str | None:
        """The token id inside a genuine token; None if tampered, foreign or expired."""
        try:
            if max_age_s is None:
                return str(self._signer.unsign(token).decode())
            return str(self._timed.unsign(token, max_age=max_age_s).decode())
        except (BadSignature, UnicodeDecodeError):
            return None

    def open_token(self, token: str) -> tuple[str, float | None] | None:
        """(token id, when it was issued if it is a timed token); None if not genuine."""
        try:
            return str(self._signer.unsign(token).decode()), None
        except (BadSignature, UnicodeDecodeError):
            pass
        try:
            value, issued = self._timed.unsign(token, return_timestamp=True)
        except (BadSignature, UnicodeDecodeError):
            return None
        return value.decode(), issued.timestamp()

    def message_id(self, campaign_id: str, delivery_id: int, domain: str) -> str:
        """Deterministic per delivery, so a resend after a crash is recognisable."""
        digest = self._mac("message-id", f"{campaign_id}\0{delivery_id}")[:12]
        return f"<{digest.hex()}@{domain}>"

    def email_hash(self, email: str) -> str:
        """Keyed hash of an address for evidence: provable on request, not reversible."""
        return self._mac("email", email.strip().lower()).hex()


class _KeyedOnce(Signer):
    """itsdangerous derives its signing key from the secret on every call (an HMAC);
    a campaign signs one token per message, so derive it once."""

    @functools.cached_property
    def _derived(self) -> bytes:
        return super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._derived if secret_key is None else super().derive_key(secret_key)


class _TimedKeyedOnce(_KeyedOnce, TimestampSigner):
    pass
