"""`herald bounces ingest` over a Maildir of N reports: its wall time and peak RSS.

In a scratch copy of the project: generate N users, plan the shipped campaign (email only),
send it to the outbox, then write one report per sent email into a Maildir, addressed to its
VERP return path: 80% permanent failures (RFC 3464), 10% delays, 5% out-of-office replies and
5% malformed MIME. Then `herald bounces ingest` runs twice (the second run records nothing);
each run's CPU and peak RSS come from os.wait4 on the child. The last stdout line is JSON.

    python bench/bounces_ingest.py --messages 10000
"""

import argparse
import json
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from engine.delivery.returnpath import return_path
from engine.delivery.tokens import Keys

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef"
sys.path.insert(0, str(ROOT))

from tests.bounces import dsn  # noqa: E402  (the same reports the tests send)


def herald(cwd: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", *args], cwd=cwd, env=env, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.stdout.close()
    if status:
        raise SystemExit(f"herald {' '.join(args)} failed:\n{output}")
    return {
        "wall_s": round(time.monotonic() - started, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "output": output.strip().splitlines()[-1] if output.strip() else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    n = parser.parse_args().messages
    work = Path(tempfile.mkdtemp(prefix="herald-bounces-bench-"))
    try:
        for folder in ("campaigns", "templates", "locales"):
            shutil.copytree(ROOT / folder, work / folder)
        yaml = work / "campaigns" / "ai-training-notice.yaml"
        spec = yaml.read_text().replace("channels: [email, inapp]", "channels: [email]")
        spec = spec.replace("rate_per_second: 200", "rate_per_second: 100000")
        spec = "\n".join(line for line in spec.splitlines() if "send_window:" not in line)
        yaml.write_text(spec + "\n")
        env = {
            **os.environ,
            "HERALD_DB": f"sqlite:///{work / 'var' / 'herald.db'}",
            "HERALD_VAR": str(work / "var"),
            "HERALD_SECRET": SECRET,
            "HERALD_SMTP_URL": "",
        }
        # EU/EEA/UK users are targeted; generate enough that N of them get an email
        herald(work, env, "users", "generate", "--count", str(int(n * 1.25) + 100))
        herald(work, env, "plan", "ai-training-notice")
        herald(work, env, "send", "ai-training-notice", "--max-wait", "1")
        engine = create_engine(env["HERALD_DB"])
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, message_id FROM delivery WHERE status = 'sent' LIMIT :n"),
                {"n": n},
            ).all()
        engine.dispose()
        keys = Keys(SECRET.encode())
        box = mailbox.Maildir(work / "Maildir")
        for i, (delivery_id, message_id) in enumerate(rows):
            verp = return_path("bounces@bounces.example.com", delivery_id, keys)
            head = f"Delivered-To: {verp}\r\n".encode()
            if i % 20 == 0:
                box.add(head + b"Subject: Out of office\r\n\r\nAway until Monday.\r\n")
            elif i % 20 == 1:
                box.add(head + b"Content-Type: multipart/report\r\n\r\nbroken\r\n")
            elif i % 10 == 2:
                box.add(head + dsn(verp, message_id, status="4.4.1", action="delayed"))
            else:
                box.add(head + dsn(verp, message_id))
        box.close()
        first = herald(work, env, "bounces", "ingest", str(work / "Maildir"))
        second = herald(work, env, "bounces", "ingest", str(work / "Maildir"))
        print(json.dumps({"messages": len(rows), "first": first, "second": second}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
