"""A real MTA: Herald relays through a throwaway Postfix instance, the next hop refuses one
recipient with 550, Postfix writes the DSN to the VERP return path and routes the bounce
domain to `herald bounces serve`. The delivery ends bounced, the in-app fallback is
delivered, and the evidence verifies.

The instance has its own config, queue and data directories under /tmp, listens on a
loopback port only, and is stopped afterwards; no system service is touched. Postfix's
master must start as root (it drops to the postfix user). Without Postfix or root the test
says why and skips; with HERALD_REQUIRE_POSTFIX=1 (CI) it fails instead.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text

from tests.conftest import ROOT
from tests.postfix import MASTER_CF, free_port, require_postfix, run_postfix
from tests.smtp import Mailbox, serve

REFUSED = "anna@example.com"
MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
mail_owner = postfix
myhostname = mta.herald.test
mydomain = herald.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
transport_maps = inline:{{ example.com=smtp:[127.0.0.1]:{next_hop},
    bounces.test=smtp:[127.0.0.1]:{bounces} }}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtpd_tls_security_level = none
smtp_tls_security_level = none
alias_maps =
alias_database =
maillog_file_prefixes = {base}
maillog_file = {base}/maillog
"""


def _wait_for_port(port: int, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{what} is not listening on {port}"
            time.sleep(0.05)


class Postfix:
    def __init__(self, next_hop: int, bounces: int) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="herald-postfix-", dir="/tmp"))
        self.base.chmod(0o755)  # the postfix user walks into it
        self.port = free_port()
        for folder in ("etc", "spool", "data"):
            (self.base / folder).mkdir(mode=0o755)
            (self.base / folder).chmod(0o755)  # whatever the umask of this process
        shutil.chown(self.base / "data", "postfix")
        values = {"base": self.base, "next_hop": next_hop, "bounces": bounces}
        (self.base / "etc" / "main.cf").write_text(MAIN_CF.format(**values))
        (self.base / "etc" / "master.cf").write_text(MASTER_CF.format(port=self.port))

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_postfix(self.base / "etc", *args)

    @property
    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no maillog)"

    def __enter__(self) -> "Postfix":
        started = self.command("start")
        assert started.returncode == 0, f"postfix start: {started.stderr}\n{self.log}"
        _wait_for_port(self.port, "Postfix")
        return self

    def __exit__(self, *exc: object) -> None:
        self.command("stop")
        shutil.rmtree(self.base, ignore_errors=True)


class RefuseOne(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.lower() == REFUSED:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def _bounce_receiver(herald, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, **herald.env}
    command = [sys.executable, "-m", "engine", "bounces", "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=herald.project.root, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_port(port, "herald bounces serve")
        yield process
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)  # reads and closes the pipe
        assert "Traceback" not in stderr, stderr


def test_postfix_bounce_reaches_herald_and_the_fallback_is_delivered(herald):
    require_postfix()
    herald.set_campaign("channels: [email, inapp]", "channels: [email]")
    herald.set_campaign("fallback: null", "fallback: inapp")
    herald.set_campaign("bounces@bounces.example.com", "bounces@bounces.test")
    assert herald("users", "import", str(ROOT / "tests" / "users.csv")).exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    bounce_port = free_port()
    next_hop = RefuseOne()
    for server in serve(next_hop):
        with Postfix(server.port, bounce_port) as postfix:
            for _ in _bounce_receiver(herald, bounce_port):
                url = f"smtp://127.0.0.1:{postfix.port}?tls=none"
                sent = herald("send", "ai-training-notice", "--max-wait", "5", smtp=url)
                assert sent.exit_code == 0, sent.output
                server.wait_for(4, timeout=30)  # the four Postfix could relay
                status = _wait_for_bounce(herald, postfix)
    assert status == "bounced"
    again = herald("send", "ai-training-notice", "--max-wait", "5")
    assert again.exit_code == 0, again.output
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT user_id, channel, status FROM delivery")).all()
        events = conn.execute(text("SELECT body FROM event WHERE kind = 'bounced'")).all()
    statuses = {(u, c): s for u, c, s in rows}
    assert statuses[("de-1", "email")] == "bounced"
    assert statuses[("de-1", "inapp")] == "delivered"
    assert (
        sorted(s for (u, c), s in statuses.items() if c == "email" and u != "de-1") == ["sent"] * 4
    )
    [data] = [json.loads(e[0])["data"] for e in events]
    assert data["status"] == "5.1.1"
    assert data["matched_by"] == "return-path"
    assert REFUSED not in data["diagnostic"]
    verified = herald("evidence", "verify", "--db")
    assert verified.exit_code == 0, verified.output


def _wait_for_bounce(herald, postfix: Postfix, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    engine = herald.database()
    while True:
        with engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM delivery WHERE user_id = 'de-1' AND channel = 'email'")
            ).scalar_one()
        if status == "bounced":
            return str(status)
        assert time.monotonic() < deadline, f"no bounce recorded; Postfix log:\n{postfix.log}"
        time.sleep(0.1)
