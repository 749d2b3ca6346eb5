"""Every aiosmtplib error maps onto ours: a new one fails this test rather than escaping."""

import inspect
import ssl

import aiosmtplib
import pytest

from engine.delivery.channels.smtp import SmtpSettings, _translated_smtp_errors
from engine.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportConfigError,
)


def _instance(cls: type[Exception]) -> Exception:
    if issubclass(cls, aiosmtplib.SMTPRecipientsRefused):
        return cls([aiosmtplib.SMTPRecipientRefused(550, "no such user", "x@example.com")])
    if issubclass(cls, aiosmtplib.SMTPSenderRefused):
        return cls(553, "sender refused", "privacy@example.com")
    if issubclass(cls, aiosmtplib.SMTPRecipientRefused):
        return cls(550, "no such user", "x@example.com")
    if issubclass(cls, aiosmtplib.SMTPResponseException):
        return cls(451, "later")
    return cls("boom")


SETTINGS = SmtpSettings("127.0.0.1", 25, tls="none")


def _wrapped_ssl_error() -> aiosmtplib.SMTPConnectError:
    """What aiosmtplib raises when an implicit-TLS handshake fails."""
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as exc:
            raise aiosmtplib.SMTPConnectError("Error connecting to 127.0.0.1") from exc
    except aiosmtplib.SMTPConnectError as wrapped:
        return wrapped


ERRORS = [
    getattr(aiosmtplib, name)
    for name in aiosmtplib.__all__
    if inspect.isclass(getattr(aiosmtplib, name))
    and issubclass(getattr(aiosmtplib, name), Exception)
]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_aiosmtplib_error_is_translated(cls):
    with pytest.raises((DeliveryError, TransportConfigError)), _translated_smtp_errors(SETTINGS):
        raise _instance(cls)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            aiosmtplib.SMTPResponseException(451, "later"),
            TemporaryDeliveryError,
            id="4xx-temporary",
        ),
        pytest.param(
            aiosmtplib.SMTPResponseException(554, "rejected"),
            PermanentDeliveryError,
            id="5xx-permanent",
        ),
        pytest.param(
            aiosmtplib.SMTPServerDisconnected("gone"),
            TemporaryDeliveryError,
            id="disconnect-temporary",
        ),
        pytest.param(
            aiosmtplib.SMTPAuthenticationError(535, "bad"),
            TransportConfigError,
            id="auth-is-our-setup",
        ),
        pytest.param(ConnectionResetError("reset"), TemporaryDeliveryError, id="os-error"),
        pytest.param(
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            TransportConfigError,
            id="tls-raw-is-our-setup",
        ),
        pytest.param(_wrapped_ssl_error(), TransportConfigError, id="tls-as-cause-is-our-setup"),
    ],
)
def test_errors_are_typed_by_what_happens_next(error, expected):
    with pytest.raises(expected), _translated_smtp_errors(SETTINGS):
        raise error
