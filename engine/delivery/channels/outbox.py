"""OutboxTransport: one .eml file per message under var/outbox/. I/O: files.

The embedded default, so that everything runs with no mail server. Files are named
after the Message-ID and written atomically; a second write of the same message is
reported as a duplicate rather than silently replaced.
"""

import asyncio
import os
from pathlib import Path

from engine.delivery.channels.base import Outgoing, Receipt, Transport
from engine.errors import TransportConfigError
from engine.models import Channel


class OutboxTransport(Transport):
    channel = Channel.EMAIL

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportConfigError(f"cannot create outbox {folder}: {exc}") from exc

    async def send(self, message: Outgoing) -> Receipt:
        name = message.message_id.strip("<>").replace("/", "_") + ".eml"
        path = self.folder / name
        duplicate = path.exists()
        try:
            await asyncio.to_thread(_write_atomically, path, message.data)
        except OSError as exc:  # a full disk is our problem, not the recipient's
            raise TransportConfigError(f"cannot write {path}: {exc}") from exc
        return Receipt(f"250 written to {path}", duplicate)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
