"""SMTP sinks for the bench: count messages and bytes, keep nothing. I/O: a loopback port,
a child process.

Postfix's C `smtp-sink` when it is installed (it saturates far later than aiosmtpd, which
takes a whole core on a small machine), else aiosmtpd in another process. Messages come
from smtp-sink's own counters (`-c`); bytes from the kernel's count of what it read
(/proc/PID/io rchar), so they include the SMTP commands around each message.
"""

import asyncio
import contextlib
import multiprocessing as mp
import os
import re
import socket
import subprocess
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

SMTP_SINK = "/usr/sbin/smtp-sink"


class Sink:
    name = ""
    port = 0

    def stats(self) -> tuple[int, int]:
        """(messages, bytes) since start or the last reset()."""
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def start_sink(eight_bit: bool = True) -> Sink:
    """The C sink when present, else aiosmtpd. Without `eight_bit` the C sink does not
    offer 8BITMIME (smtp-sink -8)."""
    if Path(SMTP_SINK).exists() and os.access(SMTP_SINK, os.X_OK):
        return CSink(eight_bit)
    return AioSink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CSink(Sink):
    name = "postfix smtp-sink (C)"
    _MESG = re.compile(rb"mesg=(\d+)")

    def __init__(self, eight_bit: bool) -> None:
        self.port = _free_port()
        argv = [SMTP_SINK, "-c", *([] if eight_bit else ["-8"])]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        argv += [f"127.0.0.1:{self.port}", "1000"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._count = 0
        self._base = (0, 0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{SMTP_SINK} exited with status {self.proc.returncode}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{SMTP_SINK} did not listen on port {self.port} within 10 s")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            found = self._MESG.findall(chunk)
            if found:
                self._count = int(found[-1])

    def _rchar(self) -> int:
        text = Path(f"/proc/{self.proc.pid}/io").read_text()
        return int(re.search(r"rchar: (\d+)", text).group(1))  # type: ignore[union-attr]

    def _raw(self) -> tuple[int, int]:
        # the counter line is written when "." is acknowledged; give the reader a moment
        time.sleep(0.2)
        return self._count, self._rchar()

    def stats(self) -> tuple[int, int]:
        count, nbytes = self._raw()
        return count - self._base[0], nbytes - self._base[1]

    def reset(self) -> None:
        self._base = self._raw()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class _Counter:
    messages = nbytes = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        self.nbytes += len(envelope.content or b"")
        envelope.content = envelope.original_content = None
        return f"250 2.0.0 OK queued as {self.messages}"


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    counter = _Counter()
    server = await loop.create_server(lambda: SMTP(counter, hostname="localhost"), "127.0.0.1", 0)
    done: asyncio.Future[None] = loop.create_future()

    def on_command() -> None:
        try:
            command = conn.recv()
        except EOFError:
            command = "stop"
        if command == "stats":
            conn.send((counter.messages, counter.nbytes))
        elif command == "reset":
            counter.messages = counter.nbytes = 0
            conn.send("ok")
        elif not done.done():
            loop.remove_reader(conn.fileno())
            done.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    conn.send(server.sockets[0].getsockname()[1])
    await done
    server.close()
    await server.wait_closed()


def _aio_main(conn: Connection) -> None:
    asyncio.run(_serve(conn))


class AioSink(Sink):
    name = "aiosmtpd (Python; saturates a core)"

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_aio_main, args=(child,), name="smtp-sink")
        self.proc.start()
        child.close()  # so that recv() raises EOFError if the sink dies
        self.port = self.conn.recv()

    def _ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stats(self) -> tuple[int, int]:
        messages, nbytes = self._ask("stats")
        return int(messages), int(nbytes)

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
