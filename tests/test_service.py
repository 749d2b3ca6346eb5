"""`herald serve` over real HTTP: the objection pages, the objection API, the in-app feed."""

import base64
import json
import re
import shutil
import time
from contextlib import chdir

import pytest
from itsdangerous import Signer

from tests.conftest import SHIPPED, Herald, ScratchProject, copy_project, scratch_herald
from tests.service import Served, serve_campaign
from tests.smtp import Mailbox, serve

USERS = """id,email,name,country,locale,timezone
de-1,anna@example.com,Anna Müller,DE,de,Europe/Berlin
fr-1,luc@example.com,Luc Dupont,FR,fr,Europe/Paris
nl-1,,Noor de Vries,NL,nl,Europe/Amsterdam
us-1,joe@example.com,Joe Smith,US,en,America/New_York
"""
API_KEY = "feed-key-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def sent_once(tmp_path_factory):
    """The shipped campaign planned and sent (outbox) to a German, a French and an
    in-app-only Dutch user; made once, copied for each test."""
    project = copy_project(tmp_path_factory.mktemp("sent"))
    root = project.root
    (root / "users.csv").write_text(USERS, encoding="utf-8")
    herald = scratch_herald(project)
    for command in (("users", "import", "users.csv"), ("plan", SHIPPED), ("send", SHIPPED)):
        with chdir(root):
            assert herald(*command).exit_code == 0, command
    return root


@pytest.fixture
def sent(sent_once, tmp_path, monkeypatch):
    root = tmp_path / "project"
    shutil.copytree(sent_once, root)
    monkeypatch.chdir(root)
    return Herald(ScratchProject(root), _env(root))


def _env(root):
    return {
        "HERALD_DB": f"sqlite:///{root / 'var' / 'herald.db'}",
        "HERALD_VAR": str(root / "var"),
        "HERALD_SECRET": "test-secret-0123456789abcdef",
        "HERALD_API_KEY": API_KEY,
    }


@pytest.fixture
def served(sent):
    with serve_campaign(sent) as s:
        yield s


def _recorded(s: Served) -> tuple[int, int, int]:
    """Objections, objected events, and deliveries: what a request could have written."""
    return (
        s.count("objection"),
        s.count("event", "kind = 'objected'"),
        s.count("delivery"),
    )


def _main(html: str) -> str:
    return html[html.index("<main>") :]


def test_get_shows_the_german_page_and_records_nothing(served):
    before = _recorded(served), served.count("event")
    page = served.http.get(f"/object/{served.token('de-1')}")
    assert page.status_code == 200
    assert '<html lang="de" dir="ltr">' in page.text
    assert "Ihr Widerspruchsrecht" in page.text  # the official term (Art. 21 GDPR, de)
    assert "berechtigten Interessen" in page.text
    assert page.text.count("<button") == 1
    assert "Ich widerspreche" in page.text
    assert '<label for="reason">Grund (optional)</label>' in page.text
    assert not re.search(r"\b(required|minlength)\b", page.text)
    for _ in range(3):  # link scanners prefetch
        assert served.http.get(f"/object/{served.token('de-1')}").status_code == 200
    assert (_recorded(served), served.count("event")) == before


def test_post_records_once_and_confirms_plainly(served):
    url = f"/object/{served.token('de-1')}"
    first = served.http.post(url, data={"reason": ""})
    assert first.status_code == 200
    assert "Ihr Widerspruch ist erfasst" in first.text
    assert "Wir senden Ihnen außerdem eine Bestätigung." in first.text
    assert _recorded(served)[:2] == (1, 1)
    objected = served.scalar("SELECT objected_at FROM objection")
    assert time.strftime("%Y", time.gmtime(objected)) in _main(first.text)

    again = served.http.post(url, data={"reason": "Ich möchte das nicht."})
    assert again.status_code == 200
    assert "Sonst hat sich nichts geändert." in again.text
    assert "Bestätigung" not in _main(again.text)  # no second confirmation promised
    assert _recorded(served)[:2] == (1, 1)
    assert served.count("delivery", "message = 'confirmation'") == 1
    assert served.scalar("SELECT reason FROM objection") is None  # the first post is the record
    page = served.http.get(url)
    assert "Ihr Widerspruch ist erfasst" in page.text
    assert "<form" not in page.text


def test_the_reason_is_optional_and_any_length(served):
    for user, reason in (("de-1", None), ("fr-1", "x"), ("nl-1", "<b>Nein</b>\r\n" * 1000)):
        data = {} if reason is None else {"reason": reason}
        response = served.http.post(f"/object/{served.token(user)}", data=data)
        assert response.status_code == 200, user
    assert served.count("objection") == 3
    kept = served.scalar("SELECT reason FROM objection WHERE user_id = 'nl-1'")
    assert len(kept) == 10_000
    assert "\r" not in kept
    assert "&lt;b&gt;" not in served.http.get(f"/object/{served.token('nl-1')}").text


def _tampered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def test_bad_tokens_get_one_page_and_record_nothing(sent):
    with serve_campaign(sent, failures_per_minute=100) as s:
        _bad_tokens_get_one_page(s)


def _bad_tokens_get_one_page(served):
    genuine = served.token("de-1")
    foreign = Signer(b"another-key-0123456789abcdef", salt="herald.objection").sign(
        genuine.split(".")[0]
    )
    unknown = served.keys.token(served.keys.token_id("ai-training-notice", "nobody"))
    bad = [_tampered(genuine), foreign.decode(), unknown, "x" * 500, "%2e%2e"]
    before = _recorded(served), served.count("event")
    bodies = set()
    for token in bad:
        for response in (
            served.http.get(f"/object/{token}"),
            served.http.post(f"/object/{token}", data={"reason": ""}),
        ):
            assert response.status_code == 404, token
            assert "This link does not work" in response.text
            assert "dpo@example.com" in response.text  # a way forward
            bodies.add(response.text)
    assert len(bodies) == 1  # nothing tells a tampered token from an unknown one
    assert (_recorded(served), served.count("event")) == before
    french = served.http.get(
        f"/object/{bad[0]}", headers={"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.5"}
    )
    assert '<html lang="fr"' in french.text
    assert "Ce lien ne fonctionne pas" in french.text


def test_the_token_reveals_neither_email_nor_id(served):
    token = served.token("de-1")
    decoded = b""
    for part in token.split("."):
        decoded += base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    for secret in (b"de-1", b"anna", b"example.com"):
        assert secret not in decoded
        assert secret.decode() not in token


def test_security_headers(served):
    token = served.token("de-1")
    for response in (
        served.http.get(f"/object/{token}"),
        served.http.post(f"/object/{token}", data={}),
        served.http.get(f"/object/{_tampered(token)}"),
    ):
        headers = response.headers
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"
        assert "max-age" in headers["strict-transport-security"]
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src" not in csp
        # nothing loaded from another origin: every src and <link href> is relative (a
        # link to the controller's privacy policy is navigation, not a load)
        assert not re.search(r'(src|<link[^>]*href)="(https?:)?//', response.text)
    css = served.http.get("/static/herald.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_a_campaigns_pages_are_styled_by_the_stylesheet_it_launched_with(sent):
    """One stylesheet edited in the service's folder after launch (to hide the form)
    reaches no launched campaign's page: each links the copy stored with it."""
    launched = (sent.project.root / "templates/pages/herald.css").read_bytes()
    (sent.project.root / "templates/pages/herald.css").write_text(
        "form, button { display: none !important; }\n"
    )
    with serve_campaign(sent) as served:
        page = served.http.get(f"/object/{served.token('de-1')}")
        assert page.status_code == 200
        [href] = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
        assert href == f"/static/{SHIPPED}/herald.css"
        css = served.http.get(href)
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert css.content == launched
        confirmed = served.http.post(f"/object/{served.token('de-1')}", data={})
        assert f'href="/static/{SHIPPED}/herald.css"' in confirmed.text
        assert served.http.get("/static/no-such-campaign/herald.css").status_code == 404
        assert served.http.get("/static/..%2Fvar/herald.css").status_code == 404


def test_language_switcher_offers_every_locale_of_the_campaign(served):
    token = served.token("de-1")
    page = served.http.get(f"/object/{token}", params={"lang": "fr"})
    assert '<html lang="fr"' in page.text
    assert "Votre droit d'opposition" in page.text
    links = re.findall(r'<a href="\?lang=(\w+)" lang="[\w-]+"', page.text)
    assert len(links) == 26
    assert {"de", "en", "fr", "ga", "mt", "is", "nb"} <= set(links)
    odd = served.http.get(f"/object/{token}", params={"lang": "xx"})
    assert '<html lang="de"' in odd.text  # unknown: the notice's language
    confirmed = served.http.post(f"/object/{token}", data={"lang": "fr"})
    assert '<html lang="fr"' in confirmed.text
    assert served.scalar("SELECT locale FROM objection") == "fr"


def test_objection_by_automated_means(served):
    token = served.token("fr-1")
    first = served.http.post("/api/objections", json={"token": token})
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "recorded"
    assert body["purpose"] == "ai-training"
    again = served.http.post("/api/objections", json={"token": token, "reason": "bot"})
    assert again.status_code == 200
    assert again.json()["status"] == "already_recorded"
    assert again.json()["objected_at"] == body["objected_at"]
    bad = served.http.post("/api/objections", json={"token": _tampered(token)})
    assert bad.status_code == 404
    assert "detail" in bad.json()
    assert served.count("objection") == 1
    assert served.scalar("SELECT via FROM objection") == "api"
    spec = served.http.get("/openapi.json").json()
    assert "/api/objections" in spec["paths"]
    assert served.http.get("/docs").status_code == 404  # off unless --docs


def test_failed_tokens_are_limited_per_client_and_genuine_ones_never(sent):
    with serve_campaign(sent, failures_per_minute=2) as s:
        tokens = [s.token(u) for u in ("de-1", "fr-1", "nl-1")]
        junk = _tampered(tokens[0])
        assert s.http.post(f"/object/{junk}", data={}).status_code == 404
        assert s.http.post("/api/objections", json={"token": junk}).status_code == 404
        limited = s.http.post(f"/object/{junk}", data={})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "<h1>" in limited.text
        assert s.http.post("/api/objections", json={"token": junk}).status_code == 429
        assert s.http.get(f"/object/{junk}").status_code == 429
        assert s.http.get(f"/object/{tokens[2]}").status_code == 200
        assert s.http.post(f"/object/{tokens[0]}", data={}).status_code == 200
        assert s.http.post("/api/objections", json={"token": tokens[1]}).status_code == 201
        assert s.http.post("/api/objections", json={"token": tokens[1]}).status_code == 200
        assert s.count("objection") == 2


def test_feed_lists_localized_notices_and_needs_a_key(served):
    path = "/api/users/fr-1/notifications"
    assert served.http.get(path).status_code == 401
    assert served.http.get(path, headers={"X-API-Key": "wrong" * 8}).status_code == 401
    headers = {"X-API-Key": API_KEY}
    page = served.http.get(path, headers=headers).json()
    [notice] = page["items"]
    assert notice["locale"] == "fr"
    assert notice["campaign"] == "ai-training-notice"
    assert notice["title"] == "Nous modifions la manière dont nous utilisons vos informations"
    assert "droit d'opposition" in notice["body"]
    assert notice["objection_url"].endswith(served.token("fr-1"))
    assert notice["seen_at"] is None
    assert notice["created_at"].endswith("Z")
    assert page["next_cursor"] is None

    served.http.post(f"/object/{served.token('nl-1')}", data={})  # an in-app confirmation
    assert served.herald("send", "ai-training-notice").exit_code == 0
    nl = served.http.get("/api/users/nl-1/notifications", params={"limit": 1}, headers=headers)
    newest = nl.json()
    assert newest["items"][0]["title"] == "Wij hebben uw bezwaar vastgelegd"
    older = served.http.get(
        "/api/users/nl-1/notifications",
        params={"limit": 1, "cursor": newest["next_cursor"]},
        headers=headers,
    ).json()
    assert older["items"][0]["id"] < newest["items"][0]["id"]
    assert older["next_cursor"] is None
    bad = served.http.get(path, params={"cursor": "nonsense"}, headers=headers)
    assert bad.status_code == 400


def test_seen_is_recorded_once(served):
    headers = {"X-API-Key": API_KEY}
    [notice] = served.http.get("/api/users/de-1/notifications", headers=headers).json()["items"]
    url = f"/api/notifications/{notice['id']}/seen"
    assert served.http.post(url).status_code == 401
    first = served.http.post(url, headers=headers).json()
    second = served.http.post(url, headers=headers).json()
    assert first["seen_at"] is not None
    assert second["seen_at"] == first["seen_at"]
    assert served.count("event", "kind = 'seen'") == 1
    assert served.http.post("/api/notifications/999999/seen", headers=headers).status_code == 404
    assert served.herald("evidence", "verify", "--db").exit_code == 0


def test_a_key_reads_only_its_campaigns(sent):
    key_file = sent.project.root / "var" / "api-keys.yaml"
    key_file.write_text(
        "other-app:\n  key: other-key-0123456789abcdef0123456789\n  campaigns: [elsewhere]\n"
        "  access: feed+seen\n"
        "reader:\n  key: reader-key-0123456789abcdef0123456789\n"
    )
    key_file.chmod(0o600)
    with serve_campaign(sent) as s:
        headers = {"X-API-Key": "other-key-0123456789abcdef0123456789"}
        page = s.http.get("/api/users/de-1/notifications", headers=headers)
        assert page.status_code == 200
        assert page.json()["items"] == []
        notice_id = s.scalar("SELECT id FROM inapp_notification WHERE user_id = 'de-1'")
        seen = s.http.post(f"/api/notifications/{notice_id}/seen", headers=headers)
        assert seen.status_code == 404
        reader = {"X-API-Key": "reader-key-0123456789abcdef0123456789"}
        [item] = s.http.get("/api/users/de-1/notifications", headers=reader).json()["items"]
        assert item["objection_url"]  # a key reads any user's feed: server-to-server only
        read_only = s.http.post(f"/api/notifications/{notice_id}/seen", headers=reader)
        assert read_only.status_code == 403
        assert s.count("event", "kind = 'seen'") == 0
        allowed = {"X-API-Key": API_KEY}
        assert s.http.post(f"/api/notifications/{notice_id}/seen", headers=allowed).is_success
        data = json.loads(s.scalar("SELECT body FROM event WHERE kind = 'seen'"))["data"]
        assert data["key"] == "HERALD_API_KEY"
    key_file.chmod(0o644)
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="chmod 600"), serve_campaign(sent):
        pass


def test_a_later_campaign_for_the_same_purpose_shows_the_earlier_objection(sent):
    later = sent.project.path("campaigns/ai-training-2025.yaml")
    text = sent.project.campaign.read_text(encoding="utf-8")
    later.write_text(text.replace("id: ai-training-notice", "id: ai-training-2025"), "utf-8")
    assert sent("plan", "ai-training-2025").exit_code == 0
    assert sent("send", "ai-training-2025").exit_code == 0
    with serve_campaign(sent) as s:
        s.http.post(f"/object/{s.token('de-1')}", data={"lang": "en"})
        page = s.http.get(f"/object/{s.token('de-1', 'ai-training-2025')}", params={"lang": "en"})
        assert "Your objection is on record" in page.text
        assert "<form" not in page.text
        assert re.search(r"You objected on \w+ \d+, \d{4}\.", page.text)
        again = s.http.post(f"/object/{s.token('de-1', 'ai-training-2025')}", data={"lang": "en"})
        assert "Nothing else has changed." in again.text
        assert s.count("objection") == 1
        assert s.scalar("SELECT campaign_id FROM objection") == "ai-training-notice"


def test_the_confirmation_is_sent_by_email_through_the_pipeline(served, smtp_server):
    served.http.post(f"/object/{served.token('de-1')}", data={})
    served.http.post(f"/object/{served.token('nl-1')}", data={})  # no email: in-app
    assert served.count("delivery", "message = 'confirmation' AND channel = 'email'") == 1
    assert served.count("delivery", "message = 'confirmation' AND channel = 'inapp'") == 1
    result = served.herald("send", "ai-training-notice", smtp=smtp_server.url)
    assert result.exit_code == 0, result.output
    [mail] = smtp_server.mailbox.messages
    assert mail["To"].addresses[0].addr_spec == "anna@example.com"
    assert mail["Subject"] == "Wir haben Ihren Widerspruch erfasst"
    text = mail.get_body(("plain",)).get_content()
    assert "Ab dem" in text
    assert "verwenden wir Ihre Beiträge" in text
    assert "falls" not in text.lower()  # no conditional wording
    events = served.count("event", "kind = 'sent' AND body LIKE '%\"message\":\"confirmation\"%'")
    assert events == 1
    assert served.herald("evidence", "verify", "--db").exit_code == 0
    report = json.loads(served.herald("report", "ai-training-notice", "--format", "json").output)
    assert report["notified"] == 3  # confirmations are not notices


def test_a_confirmation_that_cannot_be_emailed_is_given_in_app(served):
    served.http.post(f"/object/{served.token('de-1')}", data={})
    for server in serve(Mailbox(rcpt_reply="550 5.1.1 no such user")):
        result = served.herald("send", "ai-training-notice", smtp=server.url)
        assert result.exit_code == 0, result.output
    statuses = served.scalar(
        "SELECT GROUP_CONCAT(channel || ':' || status) FROM delivery "
        "WHERE message = 'confirmation' AND user_id = 'de-1'"
    )
    assert sorted(statuses.split(",")) == ["email:failed", "inapp:delivered"]
    headers = {"X-API-Key": API_KEY}
    feed = served.http.get("/api/users/de-1/notifications", headers=headers).json()
    assert feed["items"][0]["title"] == "Wir haben Ihren Widerspruch erfasst"
    assert served.herald("evidence", "verify", "--db").exit_code == 0


def test_a_form_over_the_body_limit_is_refused_before_it_is_read(served):
    response = served.http.post(
        f"/object/{served.token('de-1')}", data={"reason": "x" * (3 * 1024 * 1024)}
    )
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert served.count("objection") == 0
    again = served.http.post(f"/object/{served.token('de-1')}", data={"reason": "x" * 20_000})
    assert again.status_code == 200  # a long reason under the limit is cut, not refused
    assert len(served.scalar("SELECT reason FROM objection")) == 10_000
