"""Herald send throughput, against the limit of the pipe it sends through and against a peer.

Herald runs as subprocesses (users generate, plan, send, report) in a scratch copy of the
project and sends the ai-training-notice campaign (email + in-app), unthrottled, to N
generated users through SMTP into a sink in another process: Postfix's C smtp-sink when
installed, else aiosmtpd (which saturates a core; the bench says which). Then, into the
same sink and in the same run:
- the pipe: as many prebuilt messages of Herald's average size straight through aiosmtplib
  (`sendmail` of bytes over the same number of reused connections): no Herald work at all;
- with --peer django-post-office: its documented path (`send_many`, then the
  `send_queued_mail` command) at its default settings, messages of the same size;
- an email-only copy of the campaign, planned and sent alone: the email figures below
  (DESIGN section 12 states its baseline, 1.8-1.9x the pipe's CPU, for Herald email-only);
- an in-app-only copy of the campaign, planned and sent alone: `inapp_per_s`.
Each copy is planned after `herald validate` has passed on it, as in the README's flow (and
as the daemon does, which validates a file once): plan takes that validation for its own
(engine/authoring/validated.py). validate_s is that one command, for the three copies.

Figures (DESIGN section 12), compare them within one run only:
- msgs_per_s: the email-only copy's emails over its plan + send wall time, interpreter
  start-ups included; send_msgs_per_s over send alone. ratio = msgs_per_s / pipe_msgs_per_s.
- cpu_us_per_msg: the email-only copy's plan + send CPU (all their processes) per email;
  cpu_ratio = pipe_cpu_us_per_msg / cpu_us_per_msg (0.77 means 1.3 times the pipe's CPU).
- campaign_users_per_s, campaign_cpu_us_per_user: the same for the shipped campaign, where
  every targeted user gets an email and an in-app notice.
- peer_ratio = msgs_per_s / peer_msgs_per_s (the peer's queue + send wall time).
- plan_deliveries_per_s: the shipped campaign's deliveries (two a user) over plan's wall
  time less the start-up of a command that does no work (`herald_startup_s`, this run).
- inapp_per_s: the in-app-only campaign's steady rate with the same --workers, from its
  recorded sent_at times: deliveries after the first claimed batch (500) over the time
  from the first to the last;
  inapp_wall_per_s is over the send's wall time less start-up (Babel locale data and the
  per-locale skeletons included).
- plan_cpu_deliveries_per_s, inapp_cpu_per_s: the same over CPU seconds (less a no-op
  command's), which a busy shared machine disturbs far less than wall time.
- bytes_per_email: what the sink read per email, less the SMTP commands around it.
- peak_rss_mb: the largest of every plan's and send's (ru_maxrss of each child).

With --db postgresql+psycopg://USER@HOST/DB the same run goes to a fresh database created
beside DB (dropped afterwards), and adds the send with 1 worker and 2 daemons on the one
database (two `herald send` processes at once, as on two hosts) under "postgresql".
The last line of stdout is one JSON object; progress goes to stderr.
Alone, the pipe: python bench/throughput.py --pipe-only --users N [--size BYTES]
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sinks import Sink, start_sink

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = "ai-training-notice"
INAPP, EMAIL = f"{CAMPAIGN}-inapp", f"{CAMPAIGN}-email"
SENDER, RCPT = "bench@example.com", "sink@example.com"
KEYS = (
    "users sink workers plan_s send_s msgs_per_s send_msgs_per_s pipe_msgs_per_s ratio "
    "cpu_us_per_msg pipe_cpu_us_per_msg cpu_ratio campaign_users_per_s campaign_cpu_us_per_user "
    "peer peer_msgs_per_s peer_cpu_us_per_msg "
    "peer_peak_rss_mb peer_ratio herald_startup_s validate_s plan_deliveries_per_s inapp_per_s "
    "inapp_wall_per_s plan_cpu_deliveries_per_s inapp_cpu_per_s bytes_per_email db_mb "
    "peak_rss_mb postgresql"
).split()


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def make_project(tmp: Path) -> None:
    """The shipped project, unthrottled, plus an email-only and an in-app-only copy."""
    for name in ("campaigns", "templates", "locales"):
        shutil.copytree(REPO / name, tmp / name)
    path = tmp / "campaigns" / f"{CAMPAIGN}.yaml"
    text, n = re.subn(r"(?m)^(\s*rate_per_second:).*$", r"\1 1000000", path.read_text())
    text, m = re.subn(r"(?m)^\s*send_window:.*\n", "", text)
    if n != 1 or m != 1:
        sys.exit(f"{path}: expected one rate_per_second and one send_window line")
    path.write_text(text)
    for copy, channel in ((EMAIL, "email"), (INAPP, "inapp")):
        alone, i = re.subn(r"(?m)^id: .*$", f"id: {copy}", text)
        alone, j = re.subn(r"(?m)^channels: .*$", f"channels: [{channel}]", alone)
        if i != 1 or j != 1:
            sys.exit(f"{path}: expected one id and one channels line")
        (tmp / "campaigns" / f"{copy}.yaml").write_text(alone)
    log("scratch campaign: rate_per_second 1000000 and no send_window, so nothing throttles")


class Herald:
    """Runs herald commands in the scratch project; each returns (wall s, rusage, stdout)."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env

    def start(self, command: str) -> tuple[subprocess.Popen[bytes], float]:
        name = command.split()[0]
        log(f"herald {command}")
        out, err = (self.tmp / f"{name}.out").open("wb"), (self.tmp / f"{name}.err").open("wb")
        argv = [str(Path(sys.executable).parent / "herald"), *command.split()]
        with out, err:
            proc = subprocess.Popen(argv, cwd=self.tmp, env=self.env, stdout=out, stderr=err)
        return proc, time.perf_counter()

    def wait(self, proc: subprocess.Popen[bytes], started: float) -> tuple[float, Any, str]:
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        name = str(proc.args[1])  # type: ignore[index]
        if proc.returncode != 0:
            print((self.tmp / f"{name}.err").read_text(), file=sys.stderr)
            sys.exit(f"herald {name}: exit status {proc.returncode}")
        return wall, rusage, (self.tmp / f"{name}.out").read_text()

    def run(self, command: str) -> tuple[float, Any, str]:
        return self.wait(*self.start(command))

    def sent(self, campaign: str, channel: str) -> int:
        _, _, out = self.run(f"report {campaign} --format json")
        try:
            report = json.loads(out)["channels"][channel]
            return int(report.get("sent", 0) or report.get("delivered", 0))
        except (ValueError, KeyError, TypeError) as exc:
            sys.exit(f"report has no channels.{channel} ({exc!r}):\n{out}")


def cpu(rusage: Any) -> float:
    return float(rusage.ru_utime + rusage.ru_stime)


def herald_phase(args: argparse.Namespace, herald: Herald, sink: Sink, overhead: int) -> dict:
    """Plan and send the shipped campaign; then its email-only and its in-app-only copies."""
    starts = [herald.run("--help") for _ in range(3)]
    startup, startup_cpu = min(s[0] for s in starts), min(cpu(s[1]) for s in starts)
    herald.run(f"users generate --count {args.users} --seed {args.seed}")
    validate_s, _, _ = herald.run("validate")  # every campaign file: the three copies
    per_worker = max(1, args.concurrency // args.workers)  # the pipe's connection count in all

    def plan_and_send(campaign: str, channel: str) -> tuple[int, float, Any, float, Any]:
        sink.reset()
        plan_s, plan_ru, _ = herald.run(f"plan {campaign}")
        send = f"send {campaign} --workers {args.workers} --concurrency {per_worker}"
        send_s, send_ru, _ = herald.run(send)
        sent = herald.sent(campaign, channel)
        log(f"{campaign}: {sent} {channel} in plan {plan_s:.2f}s + send {send_s:.2f}s")
        return sent, plan_s, plan_ru, send_s, send_ru

    users, plan_s, plan_ru, send_s, send_ru = plan_and_send(CAMPAIGN, "email")
    messages, nbytes = sink.stats()
    if users != messages or not users:
        sys.exit(f"report says {users} emails sent, the sink counted {messages}")
    size = round(nbytes / users) - overhead
    deliveries = users * 2  # email and in-app for every targeted user
    sent, email_plan_s, email_plan_ru, email_send_s, email_send_ru = plan_and_send(EMAIL, "email")
    if sink.stats()[0] != sent or sent != users:
        sys.exit(f"email-only: report says {sent} sent, the sink counted {sink.stats()[0]}")
    inapp, _, inapp_plan_ru, inapp_s, inapp_ru = plan_and_send(INAPP, "inapp")
    count, first, last = inapp_span(herald.env["HERALD_DB"])
    runs = [plan_ru, send_ru, email_plan_ru, email_send_ru, inapp_plan_ru, inapp_ru]
    names = ("plan", "send", "email plan", "email send", "in-app plan", "in-app send")
    rss = zip(names, runs, strict=True)
    log("peak RSS MB: " + ", ".join(f"{name} {ru.ru_maxrss / 1024:.0f}" for name, ru in rss))
    return {
        "herald_startup_s": startup,
        "validate_s": validate_s,
        "plan_s": email_plan_s,
        "send_s": email_send_s,
        "msgs_per_s": sent / (email_plan_s + email_send_s),
        "send_msgs_per_s": sent / email_send_s,
        "cpu_us_per_msg": (cpu(email_plan_ru) + cpu(email_send_ru)) * 1e6 / sent,
        "campaign_users_per_s": users / (plan_s + send_s),
        "campaign_cpu_us_per_user": (cpu(plan_ru) + cpu(send_ru)) * 1e6 / users,
        "plan_deliveries_per_s": deliveries / max(plan_s - startup, 1e-3),
        "plan_cpu_deliveries_per_s": deliveries / max(cpu(plan_ru) - startup_cpu, 1e-3),
        "inapp_cpu_per_s": inapp / max(cpu(inapp_ru) - startup_cpu, 1e-3),
        "inapp_per_s": (count - 500) / max(last - first, 1e-3),
        "inapp_wall_per_s": inapp / max(inapp_s - startup, 1e-3),
        "peak_rss_mb": max(r.ru_maxrss for r in runs) / 1024,
        "messages": sent,
        "bytes_per_email": size,
    }


def inapp_span(url: str) -> tuple[int, float, float]:
    """(delivered, first sent_at, last sent_at) of the in-app-only campaign."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    query = sqlalchemy.text(
        "SELECT COUNT(*), MIN(sent_at), MAX(sent_at) FROM delivery "
        "WHERE campaign_id = :c AND status = 'delivered'"
    )
    try:
        with engine.connect() as conn:
            count, first, last = conn.execute(query, {"c": INAPP}).one()
    finally:
        engine.dispose()
    return int(count), float(first), float(last)


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


def pipe_phase(sink: Sink, messages: int, size: int, concurrency: int) -> dict:
    sink.reset()
    data = build_message(size)
    log(f"pipe: {messages} messages of {len(data)} bytes over {concurrency} aiosmtplib connections")
    cpu0, start = time.process_time(), time.perf_counter()
    asyncio.run(pipe_send(sink.port, messages, concurrency, data))
    wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    got, _ = sink.stats()
    if got != messages:
        sys.exit(f"the sink counted {got} messages, the pipe sent {messages}")
    log(f"pipe: {messages / wall:.0f} msgs/s")
    return {"pipe_msgs_per_s": messages / wall, "pipe_cpu_us_per_msg": cpu_s * 1e6 / messages}


def envelope_overhead(sink: Sink) -> int:
    """Bytes the sink reads per message besides the message (SMTP commands, replies' echo)."""
    sink.reset()
    data = build_message(2000)
    asyncio.run(pipe_send(sink.port, 200, 1, data))
    _, nbytes = sink.stats()
    return round(nbytes / 200) - len(data)


def peer_phase(tmp: Path, sink: Sink, messages: int, size: int, overhead: int) -> dict:
    sink.reset()
    log(f"peer django-post-office: {messages} messages of about {size} bytes")
    argv = [sys.executable, str(REPO / "bench" / "peer_django.py"), "--port", str(sink.port)]
    argv += ["--messages", str(messages), "--size", str(max(size - 400, 100))]
    argv += ["--db", str(tmp / "peer.db"), "--lock", str(tmp / "post_office")]
    with (tmp / "peer.err").open("wb") as err:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, check=False, timeout=3600)
    if done.returncode != 0:
        print((tmp / "peer.err").read_text()[-3000:], file=sys.stderr)
        sys.exit(f"peer: exit status {done.returncode}")
    peer = json.loads(done.stdout.decode().strip().splitlines()[-1])
    got, nbytes = sink.stats()
    if got != messages or peer["sent"] != messages:
        sys.exit(f"peer: the sink counted {got}, the peer says {peer['sent']} of {messages}")
    wall = peer["queue_s"] + peer["send_s"]
    log(f"peer: {messages / wall:.0f} msgs/s, {round(nbytes / got) - overhead} bytes each")
    return {
        "peer": "django-post-office",
        "peer_msgs_per_s": messages / wall,
        "peer_cpu_us_per_msg": peer["cpu_s"] * 1e6 / messages,
        "peer_peak_rss_mb": peer["peak_rss_mb"],
    }


@contextlib.contextmanager
def scratch_database(url: str | None, tmp: Path, name: str) -> Iterator[str]:
    """A SQLite file in the scratch directory, or a fresh PostgreSQL database beside `url`."""
    if url is None:
        yield f"sqlite:///{tmp}/{name}.db"
        return
    import psycopg

    base = url.replace("postgresql+psycopg://", "postgresql://", 1)
    fresh = f"herald_bench_{os.getpid()}_{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh}"')
    try:
        yield url.rsplit("/", 1)[0] + "/" + fresh
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


def postgres_sends(args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> dict:
    """On PostgreSQL, the email-only copy: one worker, and two daemons on one database."""
    figures = {}
    for label, processes in (("1_worker", 1), ("2_daemons", 2)):
        with scratch_database(args.db, tmp, label) as url:
            herald = Herald(tmp, env | {"HERALD_DB": url})
            herald.run(f"users generate --count {args.users} --seed {args.seed}")
            herald.run(f"plan {EMAIL}")
            per = max(1, args.concurrency // processes)
            started = [herald.start(f"send {EMAIL} --concurrency {per}") for _ in range(processes)]
            start = min(t for _, t in started)
            rusages = [herald.wait(p, t)[1] for p, t in started]
            wall = time.perf_counter() - start
            sent = herald.sent(EMAIL, "email")
            figures[label] = {
                "send_msgs_per_s": round(sent / wall, 1),
                "cpu_us_per_msg": round(sum(cpu(r) for r in rusages) * 1e6 / sent, 1),
            }
            log(f"postgresql {label}: {figures[label]}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="herald send worker processes")
    parser.add_argument("--peer", choices=["django-post-office"], help="also measure a peer")
    parser.add_argument("--db", help="postgresql+psycopg://... (default: SQLite files)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--pipe-only", action="store_true", help="measure only the pipe limit")
    parser.add_argument("--size", type=int, default=5300, help="message bytes for --pipe-only")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    sink = start_sink()
    try:
        log(f"SMTP sink: {sink.name} on 127.0.0.1:{sink.port}")
        overhead = envelope_overhead(sink)
        row: dict[str, Any] = {"users": None, "sink": sink.name, "workers": args.workers}
        if not args.pipe_only:
            make_project(tmp)
            env = os.environ | {
                "HERALD_SMTP_URL": f"smtp://127.0.0.1:{sink.port}?tls=none",
                "HERALD_SECRET": "bench-secret-not-for-production",
                "HERALD_VAR": f"{tmp}/var",
            }
            with scratch_database(args.db, tmp, "herald") as url:
                row |= herald_phase(args, Herald(tmp, env | {"HERALD_DB": url}), sink, overhead)
            row["users"] = args.users
            if args.db is None:
                row["db_mb"] = (tmp / "herald.db").stat().st_size / 2**20
        messages = row.get("messages", args.users)
        size = row.get("bytes_per_email", args.size)
        row |= pipe_phase(sink, messages, size, args.concurrency)
        if args.peer:
            row |= peer_phase(tmp, sink, messages, size, overhead)
        if args.db and not args.pipe_only:
            row["postgresql"] = postgres_sends(args, tmp, env)
        if "msgs_per_s" in row:
            row["ratio"] = row["msgs_per_s"] / row["pipe_msgs_per_s"]
            row["cpu_ratio"] = row["pipe_cpu_us_per_msg"] / row["cpu_us_per_msg"]
            if args.peer:
                row["peer_ratio"] = row["msgs_per_s"] / row["peer_msgs_per_s"]
        print(
            json.dumps({k: round(v, 3) if isinstance(v := row.get(k), float) else v for k in KEYS})
        )
    finally:
        sink.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
