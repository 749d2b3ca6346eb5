"""`herald daemon` as a real process, with its JSON log lines collected as they come."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERALD = str(Path(sys.executable).parent / "herald")


class DaemonProcess:
    def __init__(self, herald, smtp_url: str, *args: str) -> None:
        env = {**os.environ, **herald.env, "HERALD_SMTP_URL": smtp_url}
        command = [HERALD, "daemon", "--log-format", "json", "--tick", "0.2", "--scan", "0.3"]
        self.process = subprocess.Popen(
            [*command, *args],
            cwd=herald.project.root,
            env=env,
            text=True,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass  # a traceback: kept in raw, shown when a test fails

    def logged(self, message: str, campaign: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self.lines)
            if e["message"] == message and campaign in (None, e.get("campaign"))
        ]

    def wait_log(self, message: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for entry in self.logged(message):
                if all(entry.get(k) == v for k, v in match.items()):
                    return entry
            return None

        entry: dict[str, Any] = until(
            found, timeout, lambda: f"no {message!r} log line:\n{self.output()}"
        )
        return entry

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def output(self) -> str:
        return "".join(self.raw[-40:])

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        assert self.process.stderr is not None
        self.process.stderr.close()


def until(check: Callable[[], Any], timeout: float, why: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(why())
