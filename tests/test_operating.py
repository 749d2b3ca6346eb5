"""What an operator meets running Herald: read-only commands, ids, users, figures, exits."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEND_WINDOW

CAMPAIGN = "ai-training-notice"
HERALD = str(Path(sys.executable).parent / "herald")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["status"], id="status"),
        pytest.param(["report", CAMPAIGN], id="report"),
        pytest.param(["objections", "export"], id="objections-export"),
        pytest.param(["evidence", "verify", "--db"], id="evidence-verify"),
        pytest.param(["evidence", "export", CAMPAIGN, "--out", "pack"], id="evidence-export"),
        pytest.param(["evidence", "receipt", CAMPAIGN, "u0000001"], id="evidence-receipt"),
        pytest.param(["users", "erase", "u0000001"], id="users-erase"),
        pytest.param(["bounces", "export"], id="bounces-export"),
    ],
)
def test_read_commands_never_create_a_database(herald, args):
    herald.env["HERALD_SECRET"] = ""  # a key file would be made on first use
    var = herald.project.root / "var"
    result = herald(*args)
    assert result.exit_code == 1, result.output
    assert "no database at" in result.output
    if herald.db_url.startswith("sqlite:///"):
        assert not (var / "herald.db").exists()
    assert not (var / "secret.key").exists()


def test_read_commands_make_no_key_file_beside_an_existing_database(herald):
    assert herald("users", "generate", "--count", "5").exit_code == 0  # makes the database
    herald.env["HERALD_SECRET"] = ""
    for args in (["status"], ["objections", "export"], ["evidence", "verify", "--db"]):
        result = herald(*args)
        assert result.exit_code == 0, (args, result.output)
    assert not (herald.project.root / "var" / "secret.key").exists()


def test_report_and_send_work_from_the_stored_spec_without_the_file(herald):
    assert herald("users", "generate", "--count", "10").exit_code == 0
    assert herald("plan", CAMPAIGN).exit_code == 0
    # As if the daemon had run it from `--campaigns elsewhere/`: no file under campaigns/.
    (herald.project.root / "campaigns" / f"{CAMPAIGN}.yaml").unlink()
    sent = herald("send", CAMPAIGN)
    assert sent.exit_code == 0, sent.output
    report = herald("report", CAMPAIGN, "--format", "json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["pending"] == 0
    assert herald("status", CAMPAIGN).exit_code == 0
    unknown = herald("report", "no-such-notice")
    assert unknown.exit_code == 1
    assert "unknown campaign 'no-such-notice'" in unknown.output


def test_users_generate_adds_new_ids_and_never_changes_existing_users(herald):
    assert herald("users", "generate", "--count", "20").exit_code == 0
    engine = herald.database()
    from sqlalchemy import text

    def users() -> dict[str, tuple[str, ...]]:
        with engine.connect() as conn:
            rows = conn.execute(text('SELECT id, email, name, country FROM "user"')).all()
        return {r[0]: tuple(r[1:]) for r in rows}

    before = users()
    again = herald("users", "generate", "--count", "20", "--seed", "2")
    assert again.exit_code == 0, again.output
    assert "u0000021 to u0000040" in again.stdout
    after = users()
    engine.dispose()
    assert len(after) == 40
    assert {k: after[k] for k in before} == before


def test_plan_report_and_status_print_the_same_targeted_figure(herald, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text(
        "id,email,name,country\n" + "".join(f"p{n},p{n}@example.com,P {n},AT\n" for n in range(6)),
        "utf-8",
    )
    assert herald("users", "import", str(people)).exit_code == 0
    assert herald("plan", CAMPAIGN).exit_code == 0
    moved = tmp_path / "moved.csv"  # two of them moved out of the audience
    moved.write_text(
        "id,email,name,country\np0,p0@example.com,P 0,US\np1,p1@example.com,P 1,US\n", "utf-8"
    )
    assert herald("users", "import", str(moved)).exit_code == 0
    plan = herald("plan", CAMPAIGN)
    assert plan.exit_code == 0, plan.output
    found = re.search(r"(\d+) users targeted", plan.stdout)
    assert found, plan.stdout
    planned = int(found.group(1))
    report = json.loads(herald("report", CAMPAIGN, "--format", "json").stdout)
    status = json.loads(herald("status", CAMPAIGN, "--format", "json").stdout)
    assert planned == report["targeted"] == status["campaigns"][0]["users"]["targeted"] == 6
    assert "2 planned earlier no longer match the audience" in plan.stdout


def test_status_projects_through_the_stored_send_window(herald):
    herald.set_campaign("  rate_per_second", SEND_WINDOW + "  rate_per_second")
    assert herald("users", "generate", "--count", "10").exit_code == 0
    assert herald("plan", CAMPAIGN).exit_code == 0
    status = herald("status", CAMPAIGN, "--format", "json")
    assert status.exit_code == 0, status.output
    [campaign] = json.loads(status.stdout)["campaigns"]
    assert campaign["projected_through_send_windows"] is True
    assert campaign["outlook"] == "missed"  # the shipped deadline is in 2024


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["users", "import", "tests-users.csv", "--format", "xml"], id="users-import"),
        pytest.param(["report", CAMPAIGN, "--format", "xml"], id="report"),
        pytest.param(["status", "--format", "xml"], id="status"),
        pytest.param(["objections", "export", "--format", "xml"], id="objections-export"),
        pytest.param(["serve", "--log-format", "xml"], id="serve-log-format"),
    ],
)
def test_a_bad_format_is_a_usage_error_exit_2(herald, args):
    result = herald(*args)
    assert result.exit_code == 2, result.output
    assert "xml" in result.output


def test_serve_on_a_busy_port_exits_1(herald):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [HERALD, "serve", "--port", str(port)],
            cwd=herald.project.root,
            env={**os.environ, **herald.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_demo_link_uses_the_port_given(herald):
    result = herald("demo", "--users", "30", "--port", "9123")
    assert result.exit_code == 0, result.output
    assert re.search(r"http://127\.0\.0\.1:9123/object/\S+", result.stdout)
    assert "herald serve --port 9123" in result.stdout
    assert "rm -rf var/" in result.stdout
