"""Several hosts on one database: what they share keeps one record (README, "Running on
several machines"). Each host is a real process with its own var/; the checkpoint folder
and the signing key are shared, as on a mount every host sees."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Herald

CAMPAIGN = "ai-training-notice"
HERALD = str(Path(sys.executable).parent / "herald")


def _hosts(herald: Herald, shared: Path) -> list[dict[str, str]]:
    common = {
        **herald.env,
        "HERALD_CHECKPOINTS": str(shared / "checkpoints"),
        "HERALD_SIGNING_KEY": str(shared / "signing.pem"),
        "HERALD_SMTP_URL": "",  # each host writes its own outbox
    }
    return [common | {"HERALD_VAR": str(shared.parent / f"host-{n}")} for n in "ab"]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HERALD, *args], env=os.environ | env, capture_output=True, text=True, timeout=120
    )


def test_two_hosts_sending_at_once_sign_one_chain_that_verifies_from_either(herald, tmp_path):
    a, b = _hosts(herald, tmp_path / "shared")
    assert _run(a, "users", "generate", "--count", "60").returncode == 0
    assert _run(a, "plan", CAMPAIGN).returncode == 0
    sends = [
        subprocess.Popen(
            [HERALD, "send", CAMPAIGN],
            env=os.environ | env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for env in (a, b)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in sends]
    assert [p.returncode for p in sends] == [0, 0], outputs
    assert _run(b, "pause", CAMPAIGN).returncode == 0  # one more checkpoint, from host b

    outboxes = [len(list((Path(env["HERALD_VAR"]) / "outbox").glob("*.eml"))) for env in (a, b)]
    report = json.loads(_run(a, "report", CAMPAIGN, "--format", "json").stdout)
    assert sum(outboxes) == report["channels"]["email"]["sent"] > 0  # one queue, no repeats
    lines = (tmp_path / "shared" / "checkpoints" / f"{CAMPAIGN}.jsonl").read_bytes().splitlines()
    checkpoints = [json.loads(line) for line in lines]
    assert len(checkpoints) >= 3  # plan, the sends, the pause
    assert checkpoints[0].get("prev") is None
    for before, after in zip(lines, checkpoints[1:], strict=False):
        assert (
            after["prev"] == hashlib.sha256(before).hexdigest()
        )  # one chain, whichever host signed
    assert len({c["key"] for c in checkpoints}) == 1
    for env in (a, b):
        verified = _run(env, "evidence", "verify", "--db")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"{len(checkpoints)} checkpoint(s)" in verified.stdout


def test_a_checkpoint_folder_that_cannot_be_made_is_named(herald, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the shared folder should be")
    herald.env["HERALD_CHECKPOINTS"] = str(blocker)
    assert herald("users", "generate", "--count", "10").exit_code == 0
    planned = herald("plan", CAMPAIGN)
    assert planned.exit_code == 1
    assert f"cannot keep checkpoints in {blocker} (HERALD_CHECKPOINTS" in planned.output
    assert "Traceback" not in planned.output
    del herald.env["HERALD_CHECKPOINTS"]  # mended: the next writer signs the plan's events
    assert herald("send", CAMPAIGN).exit_code == 0
    verified = herald("evidence", "verify", "--db")
    assert verified.exit_code == 0, verified.output


def test_a_daemon_rescheduling_a_campaign_another_launches_meanwhile_leaves_it_launched(
    herald,
):
    """Two daemons on one PostgreSQL: one launches while the other, which found the same
    file, records it as scheduled. The second's write waited for the launch and then set
    the campaign back to "scheduled"; a later plan took it for finished, and status said
    "done" with every delivery pending. Each write now checks "not started" itself."""
    import threading
    import time

    from sqlalchemy import text

    from engine.authoring.campaigns import load_campaign
    from engine.store import campaigns as campaign_store
    from engine.store import writing

    engine = herald.database()
    record = load_campaign(herald.project.campaign).campaign.record
    assert campaign_store.schedule(engine, record, "spec", time.time())
    answers: list[bool] = []
    with writing(engine) as launching:  # a launch in progress, not yet committed
        launching.execute(
            text("UPDATE campaign SET state = 'planning', planned_at = 1 WHERE id = :c"),
            {"c": CAMPAIGN},
        )
        other = threading.Thread(
            target=lambda: answers.append(
                campaign_store.schedule(engine, record, "spec", time.time())
            )
        )
        other.start()
        other.join(0.5)  # it waits for the launch's lock (SQLite: the write lock)
    other.join(30)
    assert answers == [False]  # started meanwhile: nothing changed
    row = campaign_store.get(engine, CAMPAIGN)
    assert row is not None
    assert (row["state"], row["planned_at"]) == ("planning", 1)
