"""Herald send throughput, measured against the limit of the pipe it sends through.

Herald runs as subprocesses (users generate, plan, send, report) in a scratch copy of the project
and sends the ai-training-notice campaign, unthrottled, to N generated users through SMTP into a
sink: aiosmtpd in another process, counting messages and bytes and discarding them. Then this
process sends as many prebuilt messages of the same average size straight through aiosmtplib
over C connections into the same sink: the pipe limit, with no Herald work at all.

- ratio = msgs_per_s / pipe_msgs_per_s: Herald's send rate as a fraction of what the bare pipe
  (SMTP client + sink on this machine) carries; 1.0 means Herald sends as fast as the pipe allows.
- cpu_ratio = pipe_cpu_us_per_msg / cpu_us_per_msg: the fraction of Herald's CPU per message that
  the bare SMTP client needs; the rest is Herald's own work (rendering, tokens, the database).

On a small machine the aiosmtpd sink itself saturates a core: pipe_msgs_per_s is then the sink's
limit, so ratio near 1.0 means "as fast as can be measured here", not "free".

CPU and peak RSS of each Herald command come from os.wait4 on that child (user + system time,
its reaped children included; ru_maxrss in KiB on Linux); wall times include interpreter start.
The last line of stdout is one JSON object; progress goes to stderr.
Alone, the pipe: python bench/throughput.py --pipe-only --users N [--size BYTES]
"""

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = "ai-training-notice"
SENDER, RCPT = "bench@example.com", "sink@example.com"
KEYS = (
    "users plan_s send_s msgs_per_s pipe_msgs_per_s ratio "
    "cpu_us_per_msg pipe_cpu_us_per_msg cpu_ratio peak_rss_mb"
).split()


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Counter:
    """aiosmtpd handler: count messages and bytes, keep nothing."""

    messages = nbytes = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        self.nbytes += len(envelope.content or b"")
        envelope.content = envelope.original_content = None
        return f"250 2.0.0 OK queued as {self.messages}"


async def serve_sink(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    counter = Counter()
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


def sink_main(conn: Connection) -> None:
    asyncio.run(serve_sink(conn))


def ask(conn: Connection, command: str) -> Any:
    conn.send(command)
    return conn.recv()


def make_project(tmp: Path) -> None:
    for name in ("campaigns", "templates", "locales"):
        shutil.copytree(REPO / name, tmp / name)
    path = tmp / "campaigns" / f"{CAMPAIGN}.yaml"
    text, n = re.subn(r"(?m)^(\s*rate_per_second:).*$", r"\1 1000000", path.read_text())
    text, m = re.subn(r"(?m)^\s*send_window:.*\n", "", text)
    if n != 1 or m != 1:
        sys.exit(f"{path}: expected one rate_per_second and one send_window line")
    path.write_text(text)
    log("scratch campaign: rate_per_second 1000000 and no send_window, so nothing throttles")


def run_herald(command: str, tmp: Path, env: dict[str, str]) -> tuple[float, Any, str]:
    """Run one herald command; return (wall seconds, that child's rusage, its stdout)."""
    name = command.split()[0]  # users, plan, send, report: kept with --keep
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    log(f"herald {command}")
    with out.open("wb") as fout, err.open("wb") as ferr:
        start = time.perf_counter()
        argv = [Path(sys.executable).parent / "herald", *command.split()]
        proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=fout, stderr=ferr)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(err.read_text(), file=sys.stderr)
        sys.exit(f"herald {command}: exit status {proc.returncode}")
    return wall, rusage, out.read_text()


def herald_phase(args: argparse.Namespace, tmp: Path, conn: Connection, port: int) -> dict:
    make_project(tmp)
    env = os.environ | {
        "HERALD_DB": f"sqlite:///{tmp}/herald.db",
        "HERALD_SMTP_URL": f"smtp://127.0.0.1:{port}?tls=none",
        "HERALD_SECRET": "bench-secret-not-for-production",
        "HERALD_VAR": f"{tmp}/var",
    }
    run = functools.partial(run_herald, tmp=tmp, env=env)
    run(f"users generate --count {args.users} --seed {args.seed}")
    plan_s, plan_ru, _ = run(f"plan {CAMPAIGN}")
    per_worker = max(1, args.concurrency // args.workers)  # the pipe's connection count in all
    send_s, send_ru, _ = run(f"send {CAMPAIGN} --workers {args.workers} --concurrency {per_worker}")
    _, _, out = run(f"report {CAMPAIGN} --format json")
    messages, nbytes = ask(conn, "stats")
    try:
        sent = json.loads(out)["channels"]["email"]["sent"]
    except (ValueError, KeyError, TypeError) as exc:
        sys.exit(f"report has no channels.email.sent ({exc!r}):\n{out}")
    if sent != messages or not sent:
        sys.exit(f"report says {sent} emails sent, the sink counted {messages}:\n{out}")
    log(f"herald sent {sent} emails in {send_s:.2f}s, {nbytes / sent:.0f} bytes on average")
    return {
        "plan_s": plan_s,
        "send_s": send_s,
        "msgs_per_s": sent / send_s,
        "cpu_us_per_msg": (send_ru.ru_utime + send_ru.ru_stime) * 1e6 / sent,
        "peak_rss_mb": max(plan_ru.ru_maxrss, send_ru.ru_maxrss) / 1024,
        "messages": sent,
        "size": round(nbytes / sent),
    }


def build_message(size: int) -> bytes:
    """One valid RFC 5322 message of exactly `size` bytes (CRLF line ends, as the sink sees it)."""
    head = (
        f"From: Bench <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: Herald pipe benchmark\r\n"
        "Date: Wed, 22 May 2024 07:00:00 +0000\r\nMessage-ID: <pipe@bench.example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    pad = max(size - len(head), 2)
    body = (b"x" * 76 + b"\r\n") * (pad // 78 + 1)
    return head + body[: pad - 2] + b"\r\n"


async def pipe_send(port: int, messages: int, concurrency: int, data: bytes) -> None:
    async def one(count: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        for _ in range(count):
            await smtp.sendmail(SENDER, [RCPT], data)
        await smtp.quit()

    shares = [messages // concurrency + (i < messages % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(one(n) for n in shares if n))


def pipe_phase(conn: Connection, port: int, messages: int, size: int, concurrency: int) -> dict:
    ask(conn, "reset")
    data = build_message(size)
    log(f"pipe: {messages} messages of {len(data)} bytes over {concurrency} aiosmtplib connections")
    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(pipe_send(port, messages, concurrency, data))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    got, nbytes = ask(conn, "stats")
    if got != messages:
        sys.exit(f"the sink counted {got} messages, the pipe sent {messages}")
    log(f"pipe: {messages / wall:.0f} msgs/s, sink saw {nbytes / got:.0f} bytes each")
    return {"pipe_msgs_per_s": messages / wall, "pipe_cpu_us_per_msg": cpu * 1e6 / messages}


def summary(users: int | None, herald: dict, pipe: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"users": users, **herald, **pipe}
    if herald:
        row["ratio"] = herald["msgs_per_s"] / pipe["pipe_msgs_per_s"]
        row["cpu_ratio"] = pipe["pipe_cpu_us_per_msg"] / herald["cpu_us_per_msg"]
    return {k: round(v, 3) if isinstance(v := row.get(k), float) else v for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="herald send worker processes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--pipe-only", action="store_true", help="measure only the pipe limit")
    parser.add_argument("--size", type=int, default=5300, help="message bytes for --pipe-only")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    sink = ctx.Process(target=sink_main, args=(child_conn,), name="smtp-sink")
    sink.start()
    child_conn.close()  # so that recv() raises EOFError if the sink dies
    try:
        port = conn.recv()
        log(f"SMTP sink listening on 127.0.0.1:{port} (pid {sink.pid})")
        herald: dict[str, Any] = {}
        if not args.pipe_only:
            herald = herald_phase(args, tmp, conn, port)
        messages = herald.get("messages", args.users)
        pipe = pipe_phase(conn, port, messages, herald.get("size", args.size), args.concurrency)
        print(json.dumps(summary(None if args.pipe_only else args.users, herald, pipe)))
    finally:
        with contextlib.suppress(OSError):
            conn.send("stop")
        sink.join(10)
        if sink.is_alive():
            sink.terminate()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
