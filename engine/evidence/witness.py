"""The witness: a copy of every checkpoint and key rotation outside Herald's reach.
I/O: files, or a child process.

HERALD_WITNESS names a directory (WORM storage, another host's mount, the DPO's share),
where each line is appended to a file of the same name as the local one, or a command,
which reads each line on stdin and gets the file name as its last argument (to mail it
to the DPO, post it to another host, or put it in object storage with a retention lock).
Whoever controls this machine can still rewrite var/; they cannot unsend what the witness
already holds, and `herald evidence verify --witness` holds the database to it.
"""

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
