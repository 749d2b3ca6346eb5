"""Transports by channel, built from settings."""

from engine.config import Settings
from engine.delivery.channels.base import Outgoing, Receipt, TlsInfo, Transport
from engine.delivery.channels.inapp import InAppTransport
from engine.delivery.channels.outbox import OutboxTransport
from engine.delivery.channels.smtp import SmtpSettings, SmtpTransport
from engine.models import Channel

__all__ = ["Outgoing", "Receipt", "TlsInfo", "Transport", "build_transports", "describe_email"]


def build_transports(settings: Settings, concurrency: int = 8) -> dict[Channel, Transport]:
    """SMTP when HERALD_SMTP_URL is set, else the outbox; in-app always."""
    email: Transport = (
        SmtpTransport(SmtpSettings.from_url(settings.smtp_url), concurrency)
        if settings.smtp_url
        else OutboxTransport(settings.outbox)
    )
    return {Channel.EMAIL: email, Channel.INAPP: InAppTransport()}


def describe_email(settings: Settings) -> tuple[str, list[str]]:
    """How email leaves (transport, TLS mode, trust) and the risks taken, to show at start.

    Raises ConfigError when HERALD_SMTP_URL is invalid."""
    if not settings.smtp_url:
        return f"outbox {settings.outbox}/ (files, no network)", []
    smtp = SmtpSettings.from_url(settings.smtp_url)
    return smtp.describe(), smtp.warnings()
