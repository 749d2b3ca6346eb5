"""One real campaign run for the evidence tests, made once per module and copied per test.

SQLite file, aiosmtpd refusing some recipients with 550 (quoting their address), an
objection over real HTTP, a pause and a resume, a witness folder, the public key pinned.
"""

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, Herald, ScratchProject, copy_project, scratch_herald
from tests.service import serve_campaign
from tests.smtp import Mailbox, serve

REFUSED = {"anna@example.com", "zofia@example.com"}


class Refusing(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in REFUSED:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def _env(root: Path) -> dict[str, str]:
    return {
        "HERALD_DB": f"sqlite:///{root / 'var' / 'herald.db'}",
        "HERALD_VAR": str(root / "var"),
        "HERALD_SECRET": "test-secret-0123456789abcdef",
        "HERALD_WITNESS": str(root / "witness"),
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    h = scratch_herald(copy_project(root))
    h.env.update(_env(root))
    (root / "witness").mkdir(mode=0o700)
    campaign = str(h.project.campaign)
    assert h("users", "import", str(ROOT / "tests" / "users.csv")).exit_code == 0
    assert h("users", "generate", "--count", "30").exit_code == 0
    assert h("plan", campaign).exit_code == 0
    for server in serve(Refusing()):
        sent = h("send", campaign, "--max-wait", "3", smtp=server.url)
        assert sent.exit_code == 0, sent.output
        with serve_campaign(h) as served:
            token = served.token("fr-1")
            reply = served.http.post(
                f"/object/{token}", data={"reason": "Luc Dupont, luc@example.com: non"}
            )
            assert reply.status_code == 200
        confirmed = h("send", campaign, "--max-wait", "3", smtp=server.url)
        assert confirmed.exit_code == 0, confirmed.output
    assert h("pause", campaign).exit_code == 0
    assert h("resume", campaign).exit_code == 0
    key = h("evidence", "public-key")
    assert key.exit_code == 0
    (root / "pinned.pem").write_text(key.stdout)
    return root


@pytest.fixture
def run(base: Path, tmp_path: Path) -> Herald:
    shutil.copytree(base, tmp_path / "run", symlinks=True)
    root = tmp_path / "run"
    return Herald(ScratchProject(root), _env(root))


def verify(h: Herald, witness: bool = True, *extra: str):
    root = h.project.root
    args = ["evidence", "verify", "--db", "--public-key", str(root / "pinned.pem")]
    if witness:
        args += ["--witness", str(root / "witness")]
    return h(*args, *extra)
