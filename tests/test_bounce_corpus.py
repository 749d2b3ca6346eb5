"""Real bounces nobody here wrote: flufl.bounce's sample messages (Postfix, Exim, Sendmail,
qmail, Exchange, GroupWise, Yahoo, AOL...), each classified as pinned in expected.csv.

Of the 117 files, 114 (97.4%) are classified as a reader would: every bounce as permanent or
delayed with the failing address, one auto-reply, one human reply. Three bounces are left
unrecognised because they carry no status code or address a detector can trust
(bounce_01: a JetMail "mailbox space not enough", simple_43 and dumbass_01: prose only);
with a VERP return path they would still be tied to their delivery, and counted, not
acted on.
"""

import csv
from email.message import EmailMessage

import pytest

from engine.bounces.parsing import Kind, parse_bounce, reason_of
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "bounces"
with (DATA / "expected.csv").open(encoding="utf-8") as fp:
    EXPECTED = list(csv.DictReader(fp))


def test_every_sample_is_pinned():
    assert sorted(r["file"] for r in EXPECTED) == sorted(
        p.name for p in (DATA / "flufl").glob("*.txt")
    )
    assert len(EXPECTED) == 117


@pytest.mark.parametrize("row", EXPECTED, ids=[r["file"] for r in EXPECTED])
def test_sample_is_classified_as_pinned(row):
    found = parse_bounce((DATA / "flufl" / row["file"]).read_bytes())
    assert found.kind.value == row["kind"]
    assert (found.status or "") == row["status"]
    assert " ".join(found.recipients) == row["recipients"]


def test_share_of_samples_classified_as_a_reader_would():
    misses = {"bounce_01.txt", "simple_43.txt", "dumbass_01.txt"}  # see the docstring
    kinds = {r["file"]: r["kind"] for r in EXPECTED}
    assert {f for f, k in kinds.items() if k == "unrecognised"} - misses == {"groupwise_03.txt"}
    assert sum(k in ("bounced", "delayed") for k in kinds.values()) == 112
    assert (len(kinds) - len(misses)) / len(kinds) > 0.97


def _message(content_type: str, body: str, **headers: str) -> bytes:
    message = EmailMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    if content_type:
        message.replace_header("Content-Type", content_type)
    return bytes(message)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        pytest.param(
            _message("", "I am away until Monday.", Subject="Out of Office: notice"),
            Kind.AUTOREPLY,
            id="out-of-office",
        ),
        pytest.param(
            _message("", "Away.", Subject="Re: notice", X_Autoreply="yes"),
            Kind.AUTOREPLY,
            id="x-autoreply",
        ),
        pytest.param(
            _message("", "Thanks for the update, I will read it.", Subject="Re: notice"),
            Kind.UNRECOGNISED,
            id="a-human-reply",
        ),
        pytest.param(
            b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nbody\r\n",
            Kind.UNPARSEABLE,
            id="multipart-without-boundary",
        ),
        pytest.param(
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\nno boundary ever\r\n',
            Kind.UNPARSEABLE,
            id="boundary-never-found",
        ),
        pytest.param(b"", Kind.UNPARSEABLE, id="empty"),
        pytest.param(b"\x00\xff\xfe garbage", Kind.UNPARSEABLE, id="binary-garbage"),
    ],
)
def test_non_bounces_are_classified(data, kind):
    assert parse_bounce(data).kind is kind


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("5.1.1", "bad-address"),
        ("5.2.2", "mailbox-full"),
        ("5.2.1", "mailbox"),
        ("5.7.1", "policy"),
        ("4.4.1", "routing"),
        ("5.9.9", "other"),
        (None, "unknown"),
    ],
)
def test_reason_is_the_status_class(status, reason):
    assert reason_of(status) == reason
