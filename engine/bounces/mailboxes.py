"""`herald bounces ingest`: every message of an mbox file or a Maildir through the
processor. I/O: files, and the database through the processor.

Messages are read one at a time, so memory stays flat however large the mailbox. The
mailbox is only read, never changed: running it twice records nothing new.
"""

import mailbox
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.bounces.processing import BounceProcessor
from engine.errors import EngineError


class MailboxError(EngineError):
    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def read_messages(path: Path) -> Iterator[bytes]:
    """The raw messages of a Maildir (a folder with cur/ and new/) or an mbox file.
    Raises MailboxError when `path` is neither."""
    if path.is_dir():
        if not ((path / "cur").is_dir() or (path / "new").is_dir()):
            raise MailboxError(path, "a folder but not a Maildir (no cur/ or new/ in it)")
        box: mailbox.Mailbox = mailbox.Maildir(path, factory=None, create=False)
    elif path.is_file():
        with path.open("rb") as head:
            if head.read(5) not in (b"From ", b""):
                raise MailboxError(path, "not an mbox file (it does not start with 'From ')")
        box = mailbox.mbox(path, factory=None, create=False)
    else:
        raise MailboxError(path, "no such file or folder")
    try:
        for key in box.iterkeys():
            try:
                yield box.get_bytes(key)
            except (KeyError, FileNotFoundError):
                continue  # taken away by the mail fetcher while we read: not ours to keep
    finally:
        box.close()


def ingest(
    path: Path, processor: BounceProcessor, progress: Callable[[int], None] | None = None
) -> int:
    """Process every message under `path`; returns how many. Outcomes in processor.tally."""
    count = 0
    for data in read_messages(path):
        processor.process(data)
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(count)
    return count
