"""`herald serve` under attack, over real HTTP, on SQLite and (HERALD_TEST_POSTGRES)
PostgreSQL: odd text in a reason, huge bodies, junk tokens, proxies, damaged spec files,
forged log lines."""

import io
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import chdir
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from engine import logs
from tests.conftest import SHIPPED, Herald, ScratchProject, copy_project, scratch_herald
from tests.service import Served, serve_campaign

USERS = """id,email,name,country,locale,timezone
de-1,anna@example.com,Anna Müller,DE,de,Europe/Berlin
fr-1,luc@example.com,Luc Dupont,FR,fr,Europe/Paris
nl-1,,Noor de Vries,NL,nl,Europe/Amsterdam
"""
MB = 1024 * 1024


@pytest.fixture(scope="module")
def sent_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    """The shipped campaign planned and sent to three users, once per module: on a
    SQLite file, or with HERALD_TEST_POSTGRES on a PostgreSQL database that each test
    copies (CREATE DATABASE ... TEMPLATE)."""
    project = copy_project(tmp_path_factory.mktemp("sent"))
    (project.root / "users.csv").write_text(USERS, encoding="utf-8")
    server = os.environ.get("HERALD_TEST_POSTGRES")
    base = f"herald_sent_{uuid.uuid4().hex[:12]}"
    if server:
        _admin(server, f'CREATE DATABASE "{base}"')
    herald = scratch_herald(project, server.rsplit("/", 1)[0] + f"/{base}" if server else None)
    for command in (("users", "import", "users.csv"), ("plan", SHIPPED), ("send", SHIPPED)):
        with chdir(project.root):
            assert herald(*command).exit_code == 0, command
    yield herald
    if server:
        _admin(server, f'DROP DATABASE "{base}" WITH (FORCE)')


def _admin(server: str, *statements: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture
def sent(sent_once: Herald, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Herald]:
    root = tmp_path / "project"
    shutil.copytree(sent_once.project.root, root)
    env = {**sent_once.env, "HERALD_VAR": str(root / "var")}
    server = os.environ.get("HERALD_TEST_POSTGRES")
    name = f"herald_test_{uuid.uuid4().hex[:12]}"
    if server:
        base = sent_once.db_url.rsplit("/", 1)[1]
        _admin(
            server,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{base}' AND pid <> pg_backend_pid()",
            f'CREATE DATABASE "{name}" TEMPLATE "{base}"',
        )
        env["HERALD_DB"] = server.rsplit("/", 1)[0] + f"/{name}"
    else:
        env["HERALD_DB"] = f"sqlite:///{root / 'var' / 'herald.db'}"
    monkeypatch.chdir(root)
    yield Herald(ScratchProject(root), env)
    if server:
        _admin(server, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def served(sent) -> Iterator[Served]:
    with serve_campaign(sent) as s:
        yield s


def _junk(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def test_odd_text_in_a_reason_is_recorded_clean(served):
    # A JS client that cut an emoji in half sends a lone surrogate (JSON allows it).
    cut = served.http.post(
        "/api/objections",
        content=b'{"token": "%s", "reason": "Nein \\ud83d danke"}' % served.token("de-1").encode(),
        headers={"Content-Type": "application/json"},
    )
    assert cut.status_code == 201, cut.text
    nul = served.http.post(
        f"/object/{served.token('fr-1')}",
        data={"reason": "non\x00 merci\x1b[31m\r\n\tfin\x7f"},
    )
    assert nul.status_code == 200
    assert "Votre opposition est enregistrée" in nul.text or "<h1>" in nul.text
    reasons = dict(
        (row.split("|", 1))
        for row in served.scalar(
            "SELECT STRING_AGG(user_id || '|' || reason, '~') FROM objection"
            if served.herald.db_url.startswith("postgresql")
            else "SELECT GROUP_CONCAT(user_id || '|' || reason, '~') FROM objection"
        ).split("~")
    )
    assert reasons == {"de-1": "Nein  danke", "fr-1": "non merci[31m\n\tfin"}


NOT_UTF8 = [
    ("application/x-www-form-urlencoded", b"reason=%FF%FEnon&lang=nl"),
    ("application/x-www-form-urlencoded", b"reason=\xffnon&lang=nl"),
    (
        "multipart/form-data; boundary=XyZ",
        b'--XyZ\r\nContent-Disposition: form-data; name="reason"\r\n\r\n\xc3\x28nee\r\n--XyZ--\r\n',
    ),
]


def test_a_reason_that_is_not_utf8_is_refused_with_the_button_offered_again(served):
    url = f"/object/{served.token('nl-1')}"
    for content_type, body in NOT_UTF8:
        refused = served.http.post(url, content=body, headers={"Content-Type": content_type})
        assert refused.status_code == 400, body
        assert served.count("objection") == 0  # no mojibake stored
        assert '<form method="post">' in refused.text  # object, with or without a reason
        assert '<html lang="nl"' in refused.text
    again = served.http.post(url, data={"reason": "", "lang": "nl"})
    assert again.status_code == 200
    assert served.count("objection", "reason IS NULL") == 1


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _send_huge(url: str, path: str, head: dict[str, str], size: int) -> bytes:
    """POST `size` bytes from one 1 MB buffer until the server answers or hangs up;
    returns what it answered."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b"x" * MB
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in head.items())]
    chunked = head.get("Transfer-Encoding") == "chunked"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            for _ in range(size // MB):
                sock.sendall(b"100000\r\n" + chunk + b"\r\n" if chunked else chunk)
        except OSError:  # the server hung up after answering: what we want
            pass
        answer = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    return answer


@pytest.mark.parametrize(
    ("framing", "path"),
    [
        pytest.param({"Content-Length": str(200 * MB)}, "/api/objections", id="declared"),
        pytest.param({"Transfer-Encoding": "chunked"}, "/object/TOKEN", id="streamed"),
    ],
)
def test_a_200_mb_body_gets_413_and_no_memory(served, framing, path):
    path = path.replace("TOKEN", served.token("de-1"))
    kind = "application/json" if path.startswith("/api") else "application/x-www-form-urlencoded"
    before = _rss()
    answer = _send_huge(served.url, path, {"Content-Type": kind, **framing}, 200 * MB)
    grown = _rss() - before
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert grown < 10 * MB, f"RSS grew by {grown / MB:.1f} MB"
    assert served.count("objection") == 0


def test_a_thousand_junk_posts_cannot_stop_a_real_objection(served):
    token = served.token("de-1")
    junk = _junk(token)
    answers = set()
    for i in range(1000):
        if i % 2:
            answers.add(served.http.post(f"/object/{junk}", data={}).status_code)
        else:
            answers.add(served.http.post("/api/objections", json={"token": junk}).status_code)
    assert answers == {404, 429}
    assert served.http.post(f"/object/{token}", data={}).status_code == 200
    assert served.http.post("/api/objections", json={"token": token}).status_code == 200
    fr = served.http.post("/api/objections", json={"token": served.token("fr-1")})
    assert fr.status_code == 201
    assert served.count("objection") == 2


@pytest.mark.parametrize(
    ("trusted", "separate"),
    [
        pytest.param("127.0.0.1", True, id="behind-a-trusted-proxy"),
        pytest.param("127.0.0.2", False, id="untrusted-headers-ignored"),
    ],
)
def test_forwarded_allow_ips_gives_each_client_behind_a_proxy_its_bucket(sent, trusted, separate):
    with serve_campaign(sent, forwarded_allow_ips=trusted, failures_per_minute=2) as s:
        junk = _junk(s.token("de-1"))

        def post(client: str) -> int:
            headers = {"X-Forwarded-For": client}
            return s.http.post(f"/object/{junk}", data={}, headers=headers).status_code

        assert [post("127.0.10.1") for _ in range(3)] == [404, 404, 429]
        assert post("127.0.10.2") == (404 if separate else 429)


def test_damaged_spec_files_are_restored_at_start(sent):
    with serve_campaign(sent) as s:  # the first request restores the files
        assert s.http.get(f"/object/{s.token('fr-1')}").status_code == 200
    [folder] = (sent.project.root / "var" / "specs").iterdir()
    assert folder.stat().st_mode & 0o077 == 0  # restored under herald's umask
    (folder / "templates/pages/object.html").write_text("{% broken", encoding="utf-8")
    (folder / "templates/pages/confirmed.html").unlink()
    with serve_campaign(sent) as s:
        url = f"/object/{s.token('de-1')}"
        assert "Ihr Widerspruchsrecht" in s.http.get(url).text
        posted = s.http.post(url, data={})
        assert posted.status_code == 200
        assert "Ihr Widerspruch ist erfasst" in posted.text
        assert s.count("objection") == 1


def test_spec_files_damaged_while_serving_still_record_and_say_so(sent):
    with serve_campaign(sent) as s:
        url = f"/object/{s.token('de-1')}"
        assert s.http.get(url).status_code == 200
        [folder] = (sent.project.root / "var" / "specs").iterdir()
        shutil.rmtree(folder)
        folder.write_text("not a folder: nothing can be restored here")
        posted = s.http.post(url, data={})
        assert posted.status_code == 200
        assert "Ihr Widerspruch ist erfasst" in posted.text  # static, in German
        assert s.count("objection") == 1
        page = s.http.get(url)
        assert page.status_code == 503  # a clear page; nothing claims the link is bad
        assert "try again" in page.text
        folder.unlink()
        page = s.http.get(url)  # restored again on the next request
        assert page.status_code == 200
        assert "Ihr Widerspruch ist erfasst" in page.text


@pytest.fixture
def plain_log() -> Iterator[io.StringIO]:
    """What the service's loggers (herald.*, uvicorn.*) write, as `herald serve` does."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logs.setup("plain")
    root = logging.getLogger()
    handler.setFormatter(root.handlers[0].formatter)
    root.handlers[:] = []
    loggers = [logging.getLogger(name) for name in ("herald", "uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    yield buffer
    for logger in loggers:
        logger.removeHandler(handler)


def test_no_path_can_forge_a_log_line_or_leak_a_token(served, plain_log):
    token = served.token("de-1")
    forged = "2026-01-01 00:00:00 info request (client=127.0.0.9 method=GET status=200)"
    paths = [
        f"/object/x%0a{forged.replace(' ', '%20')}",
        "/object/%1b[31mred%0d%0a",
        f"/object//{token}",
        f"/./object/{token}",
        f"/object/{token}",
    ]
    for path in paths:
        served.http.get(path)
    served.http.post(f"/object/{token}%0a", data={"reason": "\n\x1b[2J"})
    deadline = time.monotonic() + 5  # the line is written just after the answer is sent
    while True:
        lines = plain_log.getvalue().splitlines()
        access = [line for line in lines if " request (" in line]
        if len(access) > len(paths) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(access) == len(paths) + 1, lines
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert "\x1b" not in plain_log.getvalue()
    assert token.split(".")[0] not in plain_log.getvalue()
    assert "route=/object/{token} status=200" in plain_log.getvalue()


def test_plain_logs_escape_control_characters(plain_log):
    logging.getLogger("herald.test").info(
        "line\nbreak", extra=logs.fields(campaign="c\x1b[31m", user="u\r\nforged\ud800")
    )
    [line] = plain_log.getvalue().splitlines()
    assert "line\\x0abreak" in line
    assert "c\\x1b[31m:" in line
    assert "user=u\\x0d\\x0aforged\\ud800" in line


def test_json_logs_stay_one_encodable_line(monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    logs.setup("json")
    formatter = logging.getLogger().handlers[0].formatter
    assert formatter is not None
    record = logging.LogRecord("herald.test", logging.INFO, __file__, 1, "a\nb", None, None)
    record.herald_fields = {"user": "u\r\n\x1b\ud800"}
    line = formatter.format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    line.encode("utf-8")  # a lone surrogate would not encode
    assert json.loads(line)["user"] == "u\r\n\x1b\ud800"


def test_head_is_answered_like_get(served):
    url = f"/object/{served.token('de-1')}"
    head = served.http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert (
        head.headers["content-security-policy"]
        == served.http.get(url).headers["content-security-policy"]
    )
    assert served.http.head(f"/object/{_junk(served.token('de-1'))}").status_code == 404
    assert served.http.head("/static/herald.css").status_code == 200
    assert served.count("objection") == 0


def test_herald_demo_leaves_nothing_readable_by_others(herald):
    old = os.umask(0o022)  # the usual default, which the command must override
    try:
        result = herald("demo", "--users", "40")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    var = herald.project.root / "var"
    found = [var, *var.rglob("*")]
    assert any(p.name.endswith(".eml") for p in found)
    if herald.db_url.startswith("sqlite"):
        assert (var / "herald.db").exists()
    loose = [f"{p} {p.stat().st_mode & 0o777:o}" for p in found if p.stat().st_mode & 0o077]
    assert loose == []


def test_database_errors_hide_their_parameters(sent):
    engine = sent.database()
    try:
        with pytest.raises(SQLAlchemyError) as caught, engine.connect() as conn:
            conn.execute(text("INSERT INTO no_such_table VALUES (:reason)"), {"reason": "Geheim"})
    finally:
        engine.dispose()
    assert "Geheim" not in str(caught.value)
    assert "hidden" in str(caught.value)


def test_a_user_id_no_database_can_hold_gets_an_empty_feed(sent):
    key = "feed-key-0123456789abcdef0123456789"
    sent.env["HERALD_API_KEY"] = key
    with serve_campaign(sent) as s:
        headers = {"X-API-Key": key}
        odd = s.http.get("/api/users/de%00-1/notifications", headers=headers)
        assert odd.status_code == 200
        assert odd.json() == {"items": [], "next_cursor": None}
        [item] = s.http.get("/api/users/de-1/notifications", headers=headers).json()["items"]
        assert item["locale"] == "de"
