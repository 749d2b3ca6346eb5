"""Herald through a throwaway Debian Postfix over STARTTLS with SASL, on loopback.

The instance has its own config_directory, queue_directory and log file, listens on a
free loopback port, and relays to an aiosmtpd sink; no system service is touched. SASL
goes to Postfix's Dovecot client, answered here by a small server speaking Dovecot's
authentication protocol (only PLAIN, one user), so no SASL package is needed.
"""

import base64
import os
import re
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postfix import MASTER_CF, free_port, require_postfix, run_postfix
from tests.smtp import Mailbox, SmtpServer
from tests.test_tls import EMAILS, _events, _launch
from tests.tlspeers import TestCA


class _DovecotAuth(socketserver.StreamRequestHandler):
    """Dovecot's auth protocol 1.2, server side: PLAIN for herald / s3cret only."""

    def handle(self) -> None:
        self.wfile.write(
            b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\n"
            b"COOKIE\t" + b"0" * 32 + b"\nDONE\n"
        )
        for _ in range(100):  # a few lines per connection; bounded all the same
            line = self.rfile.readline().decode().rstrip("\n")
            if not line:
                return
            fields = line.split("\t")
            if fields[0] != "AUTH":
                continue  # VERSION, CPID
            request, mechanism = fields[1], fields[2]
            options = dict(f.split("=", 1) for f in fields[3:] if "=" in f)
            assert isinstance(self.server, _AuthServer)
            self.server.seen.append(line)
            if mechanism != "PLAIN" or "resp" not in options:
                self.wfile.write(f"FAIL\t{request}\n".encode())
                continue
            _, user, password = base64.b64decode(options["resp"]).split(b"\0")
            ok = (user, password) == (b"herald", b"s3cret")
            if ok:
                self.wfile.write(f"OK\t{request}\tuser={user.decode()}\n".encode())
            else:
                self.wfile.write(f"FAIL\t{request}\tuser={user.decode()}\n".encode())


class _AuthServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _DovecotAuth)
        self.seen: list[str] = []


def _main_cf(root: Path, ca: TestCA, auth_port: int, sink_port: int) -> str:
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": root / "queue",
        "data_directory": root / "data",
        "meta_directory": "/etc/postfix",
        "maillog_file": root / "postfix.log",
        "maillog_file_prefixes": root,
        "myhostname": "relay.herald.test",
        "mydestination": "",
        "mynetworks": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "relayhost": f"[127.0.0.1]:{sink_port}",
        "smtp_dns_support_level": "disabled",
        "smtp_tls_security_level": "none",
        "smtpd_tls_cert_file": ca.good.cert,
        "smtpd_tls_key_file": ca.good.key,
        "smtpd_tls_security_level": "encrypt",  # STARTTLS before MAIL, as a submission port
        "smtpd_tls_auth_only": "yes",
        "smtpd_tls_loglevel": "1",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": f"inet:127.0.0.1:{auth_port}",
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
        "smtpd_recipient_restrictions": "permit_sasl_authenticated, reject",
        "smtputf8_enable": "no",
    }
    return "".join(f"{k} = {v}\n" for k, v in settings.items())


class Postfix:
    def __init__(self, root: Path, ca: TestCA, sink_port: int) -> None:
        self.root, self.port = root, free_port()
        self.auth = _AuthServer()
        self.config = root / "etc"
        self.config.mkdir(parents=True)
        for made in (root, self.config):  # whatever the umask of this process
            made.chmod(0o755)
        for name in ("data", "queue"):
            (root / name).mkdir()
            (root / name).chmod(0o755)
        shutil.chown(root / "data", "postfix", "postfix")  # master's lock, tls caches
        auth_port = self.auth.server_address[1]
        (self.config / "main.cf").write_text(_main_cf(root, ca, auth_port, sink_port))
        (self.config / "master.cf").write_text(MASTER_CF.format(port=self.port))

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_postfix(self.config, *args)

    def __enter__(self) -> "Postfix":
        threading.Thread(target=self.auth.serve_forever, daemon=True).start()
        started = self._postfix("start")
        assert started.returncode == 0, self.log()
        deadline = time.monotonic() + 15
        while True:  # ready when smtpd answers
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as probe:
                    if probe.recv(512).startswith(b"220"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"postfix did not listen:\n{self.log()}"
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        pid_file = self.root / "queue" / "pid" / "master.pid"
        pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
        self._postfix("stop")
        deadline = time.monotonic() + 15
        while pid is not None and time.monotonic() < deadline:  # until master has exited
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.auth.shutdown()
        self.auth.server_close()

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def postfix() -> Iterator[tuple[Postfix, SmtpServer, TestCA]]:
    # Not under pytest's tmp_path: its parents are 0700, and Postfix's daemons run as
    # the postfix user, who must reach the queue, the data folder and the log.
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="herald-postfix-"))
    try:
        root.chmod(0o755)
        ca = TestCA.make(root / "ca")
        with SmtpServer(Mailbox()) as sink, Postfix(root / "postfix", ca, sink.port) as relay:
            yield relay, sink, ca
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_relay_through_postfix_over_starttls_with_sasl(herald, postfix):
    relay, sink, ca = postfix
    result = _launch(herald, f"smtp://herald:s3cret@127.0.0.1:{relay.port}?cafile={ca.ca}")
    assert result.exit_code == 0, result.output + relay.log()
    sink.wait_for(EMAILS, timeout=30)
    log = relay.log()
    assert re.search(r"TLS connection established from \S+\[127\.0\.0\.1\]: TLSv1\.[23]", log)
    assert "sasl_method=PLAIN, sasl_username=herald" in log
    assert all("\tsecured" in line for line in relay.auth.seen)  # SASL ran inside TLS
    sent = _events(herald, "sent")
    assert len(sent) == EMAILS
    queue_ids = {qid for e in sent for qid in re.findall(r"queued as (\w+)", e["reply"])}
    assert len(queue_ids) == EMAILS
    assert all(f"{qid}: " in log for qid in queue_ids)  # Postfix's ids, kept as evidence
    assert {(e["tls_verified"], e["tls_version"][:6]) for e in sent} == {(True, "TLSv1.")}
