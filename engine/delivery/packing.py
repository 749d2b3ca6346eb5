"""One claimed delivery made ready to hand over: rendered and packed for its channel. Pure.

A notice renders from the campaign's template through per-variant skeletons; a
confirmation of an objection from the objection template, in full, with the date of the
objection. A problem with this one user (no address, a header we refuse) is returned as
a DeliveryError and fails only that delivery; a broken template raises TemplateError.
"""

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.authoring.campaigns import LoadedCampaign
from engine.authoring.i18n import Catalogs
from engine.authoring.rendering import Renderer, clean_field
from engine.delivery.channels.base import Outgoing
from engine.delivery.mime import build_email, domain_of, encode_address, mail_date, parse_sender
from engine.delivery.returnpath import return_path
from engine.delivery.tokens import Keys
from engine.delivery.windows import local_date
from engine.errors import DeliveryError, EngineError, PermanentDeliveryError
from engine.models import Channel, LocaleChoice, LocaleSource, RenderedMessage, User
from engine.statuses import CONFIRMATION


@dataclass(frozen=True)
class Renderers:
    """A campaign's renderers: the notice's and the confirmation's. Each keeps what it
    prepared (catalogs, Babel's data, Jinja environments, skeletons) for its lifetime."""

    notices: Renderer
    confirmations: Renderer

    @classmethod
    def of(cls, loaded: LoadedCampaign) -> "Renderers":
        templates, locales = loaded.project.templates, loaded.project.locales
        notices = Catalogs(locales)  # also the confirmations' fallback: each .po read once
        return cls(
            Renderer(templates, notices),
            Renderer(templates, Catalogs.objection(locales, notices)),
        )

    def warm(
        self, loaded: LoadedCampaign, samples: Iterable[tuple[dict[str, Any], dict[str, Any]]]
    ) -> int:
        """Render the notices of `samples` (claimed rows with their users) and discard
        them, so that processes forked afterwards share what that prepared instead of each
        preparing it again; how many rendered. A broken template stops the warming
        silently: the send that renders it reports it."""
        c, count = loaded.campaign, 0
        url = c.objection.url.format(token="warming")  # a personal value: any will do
        for row, user_row in samples:
            user, channel = _user(user_row), Channel(row["channel"])
            if channel is Channel.EMAIL and not user.email:
                continue  # pack() refuses it before rendering
            choice = LocaleChoice(
                row["locale"], LocaleSource(row["locale_source"]), row["fell_back"]
            )
            try:
                self.notices.render(c, user, channel, objection_url=url, locale=choice)
            except EngineError:
                break
            count += 1
        return count


def _user(row: dict[str, Any]) -> User:
    return User(
        row["id"], row["email"], row["name"], row["country"], row["locale"], row["timezone"]
    )


class Packer:
    def __init__(
        self,
        loaded: LoadedCampaign,
        keys: Keys,
        clock: Callable[[], float],
        eight_bit: bool = False,
        renderers: Renderers | None = None,
    ) -> None:
        """`eight_bit`: the email transport takes 8bit parts (Transport.takes_eight_bit);
        `renderers`: the campaign's, already warmed (Renderers.warm), else new ones."""
        c = loaded.campaign
        self.campaign, self.keys, self.clock, self.eight_bit = c, keys, clock, eight_bit
        renderers = renderers or Renderers.of(loaded)
        self.notices, self.confirmations = renderers.notices, renderers.confirmations
        sender_name, self.sender = parse_sender(c.sender.from_)
        self.from_header = encode_address(sender_name, self.sender)
        self.domain = domain_of(self.sender)

    def pack(
        self, row: dict[str, Any], user_row: dict[str, Any] | None
    ) -> tuple[RenderedMessage, Outgoing] | DeliveryError:
        """Render and pack one claimed delivery (`row`, with `objected_at` for a
        confirmation); a problem with this user is returned, not raised."""
        c = self.campaign
        channel = Channel(row["channel"])
        if user_row is None:
            return PermanentDeliveryError("the user no longer exists")
        user = _user(user_row)
        if channel is Channel.EMAIL and not user.email:
            return PermanentDeliveryError("no email address")
        token = self.keys.token(row["token_id"], timed=c.objection.token_ttl_days is not None)
        url = c.objection.url.format(token=token)
        choice = LocaleChoice(row["locale"], LocaleSource(row["locale_source"]), row["fell_back"])
        if row["message"] == CONFIRMATION:
            if row["objected_at"] is None:
                return PermanentDeliveryError("no objection on record to confirm")
            objected = local_date(row["objected_at"], user.timezone, user.country)
            message = self.confirmations.render_confirmation(
                c, user, channel, objection_url=url, locale=choice, objected=objected
            )
        else:
            message = self.notices.render(c, user, channel, objection_url=url, locale=choice)
        message_id = self.keys.message_id(c.id, row["id"], self.domain)
        if channel is Channel.INAPP:
            notification = {
                "delivery_id": row["id"],
                "user_id": user.id,
                "campaign_id": c.id,
                "locale": choice.locale,
                "title": message.subject,
                "body": message.text,
                "objection_url": url,
                "created_at": self.clock(),
            }
            return message, Outgoing(
                row["id"], user.id, channel, message_id, notification=notification
            )
        assert user.email is not None
        assert message.html is not None
        try:
            data = self._email_bytes(message, user, message_id, choice)
        except ValueError as exc:  # a header value we refuse to send; about this user only
            return PermanentDeliveryError(f"cannot build the message: {exc}")
        # With a return path, the envelope sender (MAIL FROM) names this delivery, so its
        # DSN maps back to it; the From header stays sender.from.
        base = c.sender.return_path
        sender = return_path(base, row["id"], self.keys) if base else self.sender
        return message, Outgoing(
            row["id"],
            user.id,
            channel,
            message_id,
            sender,
            user.email,
            data,
            eight_bit=self.eight_bit and not data.isascii(),
        )

    def _email_bytes(
        self, message: RenderedMessage, user: User, message_id: str, choice: LocaleChoice
    ) -> bytes:
        assert user.email is not None
        assert message.html is not None
        return build_email(
            from_header=self.from_header,
            to_header=encode_address(clean_field(user.name), user.email),
            subject=message.subject,
            text=message.text,
            html=message.html,
            message_id=message_id,
            date=mail_date(int(self.clock())),
            language=choice.locale.replace("_", "-"),
            reply_to=self.campaign.sender.reply_to,
            eight_bit=self.eight_bit,
        )


def content_sha256(message: RenderedMessage) -> str:
    """What the user was shown: subject, text and HTML, independent of headers and dates."""
    digest = hashlib.sha256(message.subject.encode())
    for part in (message.text, message.html or ""):
        digest.update(b"\0")
        digest.update(part.encode())
    return digest.hexdigest()
