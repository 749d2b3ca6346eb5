"""One claimed delivery made ready to hand over: rendered and packed for its channel. Pure.

A notice renders from the campaign's template through per-variant skeletons; a
confirmation of an objection from the objection template, in full, with the date of the
objection. A problem with this one user (no address, a header we refuse) is returned as
a DeliveryError and fails only that delivery; a broken template raises TemplateError.
"""

import hashlib
from collections.abc import Callable
from typing import Any

from engine.authoring.campaigns import LoadedCampaign
from engine.authoring.i18n import Catalogs
from engine.authoring.rendering import Renderer, clean_field
from engine.delivery.channels.base import Outgoing
from engine.delivery.mime import build_email, domain_of, encode_address, mail_date, parse_sender
from engine.delivery.returnpath import return_path
from engine.delivery.tokens import Keys
from engine.delivery.windows import local_date
from engine.errors import DeliveryError, PermanentDeliveryError
from engine.models import Channel, LocaleChoice, LocaleSource, RenderedMessage, User
from engine.statuses import CONFIRMATION


class Packer:
    def __init__(
        self,
        loaded: LoadedCampaign,
        keys: Keys,
        clock: Callable[[], float],
        eight_bit: bool = False,
    ) -> None:
        """`eight_bit`: the email transport takes 8bit parts (Transport.takes_eight_bit)."""
        c, project = loaded.campaign, loaded.project
        self.campaign, self.keys, self.clock, self.eight_bit = c, keys, clock, eight_bit
        self.notices = Renderer(project.templates, Catalogs(project.locales))
        self.confirmations = Renderer(project.templates, Catalogs.objection(project.locales))
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
        user = User(
            user_row["id"],
            user_row["email"],
            user_row["name"],
            user_row["country"],
            user_row["locale"],
            user_row["timezone"],
        )
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
