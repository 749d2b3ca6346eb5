"""SMTP over TLS against real peers on loopback: aiosmtpd with STARTTLS and implicit TLS,
certificates from a throwaway CA, and a relay that strips STARTTLS.

What is proven: TLS cannot be downgraded, no password leaves in clear text, a
certificate failure stops the run and marks no one failed, and every `sent` event says
how the message crossed the network.
"""

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import text

from engine.delivery.channels.base import Outgoing
from engine.delivery.channels.smtp import SmtpSettings, SmtpTransport
from engine.errors import ConfigError, TransportConfigError
from engine.models import Channel
from tests.conftest import ROOT
from tests.smtp import Mailbox, SmtpServer
from tests.tlspeers import ServerIdentity, StrippingRelay, TestCA

USERS = str(ROOT / "tests" / "users.csv")
EMAILS = 5  # users in tests/users.csv inside the campaign's regions
REQUIRE = "  max_attempts: 8\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.make(tmp_path_factory.mktemp("ca"))


@dataclass
class Logins:
    """aiosmtpd authenticator that keeps every AUTH it sees."""

    seen: list[tuple[str, bytes]] = field(default_factory=list)

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.seen.append((mechanism, auth_data.login))
        return AuthResult(success=auth_data.password == b"s3cret")


def _tls_server(
    identity: ServerIdentity, implicit: bool = False, logins: Logins | None = None
) -> SmtpServer:
    """aiosmtpd offering STARTTLS (or speaking TLS from the first byte), and AUTH even
    in clear text, so that a client that sent its password would be seen doing it."""
    context = identity.context()
    options: dict[str, Any] = {"authenticator": logins or Logins(), "auth_require_tls": False}
    if implicit:
        return SmtpServer(Mailbox(), listen_ssl=context, **options)
    return SmtpServer(Mailbox(), tls_context=context, **options)


@pytest.fixture
def starttls(ca: TestCA) -> Iterator[SmtpServer]:
    with _tls_server(ca.good) as server:
        yield server


def _launch(herald, smtp: str, *, plan: bool = True):
    if plan:
        assert herald("users", "import", USERS).exit_code == 0
        planned = herald("plan", "ai-training-notice")
        assert planned.exit_code == 0, planned.output
    return herald("send", "ai-training-notice", "--max-wait", "2", smtp=smtp)


def _emails(herald) -> list[dict[str, Any]]:
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT * FROM delivery WHERE channel = 'email'")).mappings()
        return [dict(r) for r in rows]


def _events(herald, kind: str | None = None) -> list[dict[str, Any]]:
    with herald.database().connect() as conn:
        rows = conn.execute(text("SELECT kind, channel, body FROM event ORDER BY seq")).all()
    return [
        {"kind": k, "channel": ch, **json.loads(data)["data"]}
        for k, ch, data in rows
        if kind in (None, k)
    ]


def _unverified(herald) -> int:
    result = herald("report", "ai-training-notice", "--format", "json")
    assert result.exit_code == 0, result.output
    count: int = json.loads(result.stdout)["emails_sent_without_verified_tls"]
    return count


def _assert_nothing_left(herald, server: SmtpServer) -> None:
    """The run stopped on our setup: no email went, none failed, none will be retried."""
    assert server.mailbox.messages == []
    emails = _emails(herald)
    assert len(emails) == EMAILS
    assert {(r["status"], r["attempts"]) for r in emails} == {("pending", 0)}
    kinds = {e["kind"] for e in _events(herald) if e["channel"] == "email"}
    assert not kinds & {"sent", "failed", "deferred"}


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "tls", "port"),
    [
        pytest.param("smtp://relay.example.com", "starttls", 25, id="default-starttls"),
        pytest.param("smtps://relay.example.com", "implicit", 465, id="smtps"),
        pytest.param("smtp://relay.example.com?tls=implicit", "implicit", 465, id="tls-implicit"),
        pytest.param("smtp://u:p@relay.example.com:587?starttls=true", "starttls", 587, id="alias"),
        pytest.param("smtp://127.0.0.1?starttls=false", "none", 25, id="alias-none-loopback"),
        pytest.param("smtp://10.1.2.3?tls=none", "none", 25, id="none-private-network"),
        pytest.param(
            "smtp://relay.example.com?tls=none&allow_plaintext=true", "none", 25, id="none-told"
        ),
    ],
)
def test_smtp_url_tls_modes(url, tls, port):
    settings = SmtpSettings.from_url(url)
    assert (settings.tls, settings.port) == (tls, port)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        pytest.param("smtp://relay.example.com?tls=none", "in clear text", id="none-public"),
        pytest.param("smtp://u:p@127.0.0.1?tls=none", "password in clear", id="auth-in-clear"),
        pytest.param("smtps://relay.example.com?tls=none", "contradict", id="contradiction"),
        pytest.param(
            "smtp://h?tls=starttls&starttls=false", "contradict", id="alias-contradiction"
        ),
        pytest.param("smtp://h?tls=maybe", "starttls, implicit or none", id="unknown-mode"),
        pytest.param("smtp://h?cafile=/nonexistent/ca.pem", "not a readable file", id="cafile"),
        pytest.param("smtp://h?cafile=ca.pem&verify=false", "verify=false", id="cafile-noverify"),
        pytest.param("smtp://127.0.0.1?tls=none&verify=false", "tls=starttls", id="none-verify"),
    ],
)
def test_smtp_url_refuses_unsafe_or_contradictory_tls(url, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        SmtpSettings.from_url(url)


# -- verified TLS works -----------------------------------------------------------------


def test_starttls_with_a_private_ca_authenticates_and_records_tls(herald, ca):
    logins = Logins()
    with _tls_server(ca.good, logins=logins) as server:
        url = f"smtp://herald:s3cret@127.0.0.1:{server.port}?cafile={ca.ca}"
        result = _launch(herald, url)
        assert result.exit_code == 0, result.output
        assert len(server.mailbox.messages) == EMAILS
    assert "email: smtp 127.0.0.1" in result.stdout
    assert "STARTTLS (required), certificate verified" in result.stdout
    assert "with AUTH" in result.stdout  # the user name (often an address) is not shown
    assert "s3cret" not in result.output
    assert logins.seen
    assert {login for _, login in logins.seen} == {b"herald"}
    sent = _events(herald, "sent")
    assert len(sent) == EMAILS
    for event in sent:
        assert event["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert event["tls_cipher"]
        assert event["tls_verified"] is True
    assert not any("tls_version" in e for e in _events(herald, "delivered"))  # in-app
    assert _unverified(herald) == 0


def test_implicit_tls_with_a_private_ca_records_tls(herald, ca):
    with _tls_server(ca.good, implicit=True) as server:
        result = _launch(herald, f"smtps://127.0.0.1:{server.port}?cafile={ca.ca}")
        assert result.exit_code == 0, result.output
        assert len(server.mailbox.messages) == EMAILS
    assert "implicit TLS, certificate verified" in result.stdout
    sent = _events(herald, "sent")
    assert {e["tls_verified"] for e in sent} == {True}
    assert all(e["tls_version"].startswith("TLSv1.") for e in sent)


# -- no downgrade -----------------------------------------------------------------------


def test_stripped_starttls_stops_the_run_before_any_password_leaves(herald, starttls):
    logins = starttls._options["authenticator"]
    with StrippingRelay(starttls.port) as relay:
        result = _launch(herald, f"smtp://herald:s3cret@127.0.0.1:{relay.port}")
    assert result.exit_code == 1
    assert f"127.0.0.1:{relay.port} did not offer STARTTLS" in result.stderr
    assert relay.stripped >= 1  # the attack really happened
    assert any(line.upper().startswith(b"EHLO") for line in relay.commands)
    assert not relay.sent_auth()
    assert logins.seen == []
    assert not any(line.upper().startswith(b"MAIL") for line in relay.commands)
    _assert_nothing_left(herald, starttls)


# -- certificate failures are our setup -------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "trust_ca", "reason"),
    [
        pytest.param("good", False, "unable to get local issuer certificate", id="unknown-ca"),
        pytest.param("self_signed", True, "self.signed certificate", id="self-signed"),
        pytest.param("wrong_name", True, "mismatch", id="wrong-name"),
    ],
)
def test_certificate_failure_stops_the_run_and_leaves_every_email_pending(
    herald, ca, identity, trust_ca, reason
):
    with _tls_server(getattr(ca, identity)) as server:
        url = f"smtp://127.0.0.1:{server.port}" + (f"?cafile={ca.ca}" if trust_ca else "")
        result = _launch(herald, url)
        assert result.exit_code == 1, result.output
        assert f"127.0.0.1:{server.port}" in result.stderr
        assert re.search(reason, result.stderr), result.stderr
        assert "certificate was not accepted" in result.stderr
        _assert_nothing_left(herald, server)


def _send_one(settings: SmtpSettings) -> None:
    message = Outgoing(
        1, "u1", Channel.EMAIL, "<m1@herald>", "privacy@example.com", "anna@example.com", b"x"
    )

    async def go() -> None:
        transport = SmtpTransport(settings, concurrency=1)
        try:
            await asyncio.wait_for(transport.send(message), 10)
        finally:
            await transport.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("identity", "trust_ca", "reason"),
    [
        pytest.param("good", False, "unable to get local issuer certificate", id="unknown-ca"),
        pytest.param("self_signed", True, "self.signed certificate", id="self-signed"),
        pytest.param("wrong_name", True, "mismatch", id="wrong-name"),
    ],
)
def test_implicit_tls_certificate_failure_is_our_setup(ca, identity, trust_ca, reason):
    """aiosmtplib wraps these in SMTPConnectError, which alone would be retried."""
    with _tls_server(getattr(ca, identity), implicit=True) as server:
        settings = SmtpSettings(
            "127.0.0.1", server.port, tls="implicit", cafile=str(ca.ca) if trust_ca else None
        )
        with pytest.raises(TransportConfigError, match=reason):
            _send_one(settings)
        assert server.mailbox.messages == []


def test_ssl_cert_file_trusts_a_private_ca_for_the_process(ca, monkeypatch):
    with _tls_server(ca.good, implicit=True) as server:
        settings = SmtpSettings("127.0.0.1", server.port, tls="implicit")
        with pytest.raises(TransportConfigError, match="unable to get local issuer"):
            _send_one(settings)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca))
        _send_one(settings)
        assert len(server.mailbox.messages) == 1


def test_cafile_makes_the_refused_server_work_and_nothing_was_lost(herald, starttls, ca):
    refused = _launch(herald, f"smtp://127.0.0.1:{starttls.port}")
    assert refused.exit_code == 1
    _assert_nothing_left(herald, starttls)
    fixed = _launch(herald, f"smtp://127.0.0.1:{starttls.port}?cafile={ca.ca}", plan=False)
    assert fixed.exit_code == 0, fixed.output
    assert len(starttls.mailbox.messages) == EMAILS
    assert {(r["status"], r["attempts"]) for r in _emails(herald)} == {("sent", 1)}


# -- unverified and clear text: allowed when asked, warned, recorded --------------------


def test_verify_false_works_warns_and_is_visible_in_the_events(herald, ca):
    with _tls_server(ca.self_signed) as server:
        result = _launch(herald, f"smtp://127.0.0.1:{server.port}?verify=false")
        assert result.exit_code == 0, result.output
        assert len(server.mailbox.messages) == EMAILS
    assert "certificate NOT verified" in result.stdout
    assert "warning: verify=false" in result.stderr
    sent = _events(herald, "sent")
    assert {e["tls_verified"] for e in sent} == {False}
    assert all(e["tls_version"] for e in sent)  # encrypted, just not authenticated
    assert _unverified(herald) == EMAILS


def test_clear_text_on_loopback_warns_and_is_recorded(herald, smtp_server):
    result = _launch(herald, smtp_server.url)
    assert result.exit_code == 0, result.output
    assert "no TLS (clear text)" in result.stdout
    assert "warning: tls=none" in result.stderr
    sent = _events(herald, "sent")
    assert len(sent) == EMAILS
    assert {(e["tls_version"], e["tls_cipher"], e["tls_verified"]) for e in sent} == {
        (None, None, False)
    }
    assert _unverified(herald) == EMAILS


@pytest.mark.parametrize("option", ["verify=false", "tls=none"])
def test_require_verified_tls_refuses_to_send_without_it(herald, ca, smtp_server, option):
    herald.set_campaign(REQUIRE, REQUIRE + "  require_verified_tls: true\n")
    with _tls_server(ca.self_signed) as tls_server:
        server = tls_server if option == "verify=false" else smtp_server
        result = _launch(herald, f"smtp://127.0.0.1:{server.port}?{option}")
        assert result.exit_code == 1
        assert "require_verified_tls" in result.stderr
        assert option in result.stderr
        _assert_nothing_left(herald, server)


def test_require_verified_tls_sends_over_verified_tls(herald, starttls, ca):
    herald.set_campaign(REQUIRE, REQUIRE + "  require_verified_tls: true\n")
    result = _launch(herald, f"smtp://127.0.0.1:{starttls.port}?cafile={ca.ca}")
    assert result.exit_code == 0, result.output
    assert {e["tls_verified"] for e in _events(herald, "sent")} == {True}


def test_daemon_holds_a_campaign_on_a_certificate_failure(herald, starttls):
    from tests.daemon import DaemonProcess, until

    assert herald("users", "import", USERS).exit_code == 0
    with DaemonProcess(herald, f"smtp://127.0.0.1:{starttls.port}") as daemon:
        started = daemon.wait_log("started")
        assert "STARTTLS (required)" in started["email"]
        held = daemon.wait_log("held", campaign="ai-training-notice")
        assert "unable to get local issuer certificate" in held["error"]
        until(lambda: len(_emails(herald)) == EMAILS, 10, daemon.output)
        assert daemon.stop() == 0
    assert not daemon.logged("done")
    _assert_nothing_left(herald, starttls)
