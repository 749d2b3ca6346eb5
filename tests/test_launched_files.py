"""A launched campaign sends the files it launched with, whatever happens to the project's
files meanwhile: they are bound in its `started` event and stored with it."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERALD = str(Path(sys.executable).parent / "herald")


def test_a_catalog_edited_during_a_send_does_not_reach_its_messages(herald):
    """Catalogs are read as each language is first rendered, and rendering keeps only a
    few messages ahead of the sending. From the project's folders, a translation edited
    while `herald send` ran reached the languages not yet rendered, while the evidence
    named the files the campaign had launched with."""
    herald.set_campaign("rate_per_second: 100000", "rate_per_second: 20")
    root = herald.project.root
    rows = ["id,email,name,country,locale,timezone"]
    rows += [f"de{i},de{i}@example.com,Anna {i},DE,de,Europe/Berlin" for i in range(40)]
    rows += [f"pl{i},pl{i}@example.com,Jan {i},PL,pl,Europe/Warsaw" for i in range(5)]
    (root / "users.csv").write_text("\n".join(rows) + "\n")
    assert herald("users", "import", "users.csv").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    env = {**os.environ, **herald.env, "HERALD_SMTP_URL": ""}
    command = [HERALD, "send", "ai-training-notice", "--concurrency", "1", "--max-wait", "1"]
    send = subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((root / "var" / "outbox").glob("*.eml")):  # the first German email
            assert send.poll() is None, send.communicate()[1]
            assert time.monotonic() < deadline, "nothing was sent"
            time.sleep(0.02)
        po = root / "locales/pl/LC_MESSAGES/messages.po"
        text = re.sub(r'(msgid "Object now"\nmsgstr )".*"', r'\1"EDITED"', po.read_text())
        po.write_text(text, encoding="utf-8")
        _, errors = send.communicate(timeout=120)
    finally:
        send.kill()
    assert send.returncode == 0, errors
    polish = [
        e for e in (root / "var" / "outbox").glob("*.eml") if b"Language: pl\r" in e.read_bytes()
    ]
    assert len(polish) == 5
    assert [e.name for e in polish if b"EDITED" in e.read_bytes()] == []
