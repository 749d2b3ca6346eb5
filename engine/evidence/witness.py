"""The witness: a copy of every checkpoint and key rotation outside Herald's reach.
I/O: files, or a child process.

HERALD_WITNESS names a directory (WORM storage, another host's mount, the DPO's share),
where each line is appended to a file of the same name as the local one, or a command,
which reads each line on stdin and gets the file name as its last argument (to mail it
to the DPO, post it to another host, or put it in object storage with a retention lock).
Whoever controls this machine can still rewrite var/; they cannot unsend what the witness
already holds, and `herald evidence verify --witness` holds the database to it.
"""

import json
import shlex
import subprocess
from pathlib import Path

from engine.errors import ConfigError
from engine.evidence.checkpoints import append_line


class WitnessError(ConfigError):
    """The witness did not take a checkpoint: the local copy exists, the off-host one not."""


def send_to_witness(witness: str, name: str, line: bytes) -> None:
    """Give `line` (one checkpoint or rotation, no newline) to the witness."""
    folder = Path(witness)
    if folder.is_dir():
        try:
            append_line(folder / name, line)
        except OSError as exc:
            raise WitnessError(f"witness {folder}: cannot append to {name}: {exc}") from exc
        return
    command = [*shlex.split(witness), name]
    try:
        done = subprocess.run(
            command, input=line + b"\n", capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WitnessError(f"witness command {command[0]!r} failed: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise WitnessError(
            f"witness command {command[0]!r} exited {done.returncode} for {name}: {tail}"
        )


BACKLOG = "witness-backlog"  # not *.jsonl: those are campaigns


def queue_for_witness(folder: Path, name: str, line: bytes) -> None:
    """Note a line the witness must get, before trying: a crash cannot lose it."""
    entry = json.dumps({"name": name, "line": line.decode("utf-8")}, ensure_ascii=False)
    append_line(folder / BACKLOG, entry.encode("utf-8"))


def flush_witness(witness: str, folder: Path) -> int:
    """Give the witness every queued line, oldest first; what it refuses stays queued for
    the next writer. Raises WitnessError when something is left; returns how many went."""
    backlog = folder / BACKLOG
    if not backlog.exists():
        return 0
    entries = [json.loads(raw) for raw in backlog.read_bytes().splitlines() if raw.strip()]
    sent, error = 0, None
    for entry in entries:
        try:
            send_to_witness(witness, entry["name"], entry["line"].encode("utf-8"))
        except WitnessError as exc:
            error = exc
            break
        sent += 1
    left = entries[sent:]
    tmp = backlog.with_name(f"{BACKLOG}.tmp")
    tmp.write_bytes(b"".join(json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in left))
    tmp.chmod(0o600)
    tmp.replace(backlog)
    if error is not None:
        raise WitnessError(f"{error}; {len(left)} line(s) wait in {backlog}") from error
    return sent
