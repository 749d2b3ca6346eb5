"""Settings from the environment, and the secret key. The only module that reads os.environ.

HERALD_DB        database URL (default sqlite:///var/herald.db; postgresql+psycopg://... too)
HERALD_SMTP_URL  smtp://user:pass@host:587?tls=starttls|implicit|none  (unset: the outbox)
HERALD_SECRET    signing key for objection links, Message-IDs and keyed hashes; unset: a
                 key file generated once under HERALD_VAR with 0600 permissions
HERALD_SIGNING_KEY  Ed25519 private key (PEM, 0600) that signs chain checkpoints; default
                 var/signing.pem, generated on first use. Keep a copy off this machine.
HERALD_API_KEY   the key an app presents to read the in-app feed (X-API-Key); more keys,
                 each limited to some campaigns, in HERALD_API_KEYS (YAML, 0600; default
                 var/api-keys.yaml)
HERALD_CHECKPOINTS  the folder of signed checkpoints (default var/checkpoints); hosts that
                 share a database share it too (a mount with file locks), so each
                 campaign has one chain of checkpoints
HERALD_WITNESS   where every checkpoint is also sent: a directory (WORM storage, another
                 host's mount), or a command that reads each checkpoint line on stdin
HERALD_BOUNCE_LISTEN  host:port where `herald daemon` also receives bounces (SMTP); unset: not
HERALD_FORWARDED_ALLOW_IPS  proxies whose X-Forwarded-For `herald serve` believes:
                 addresses or networks, comma-separated, or * (default 127.0.0.1)
HERALD_VAR       where runtime state lives (default ./var): database, outbox, key files,
                 checkpoints, the files of started campaigns
"""

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError

SECRET_FILE = "secret.key"


@dataclass(frozen=True)
class Settings:
    var: Path
    db_url: str
    smtp_url: str | None
    secret: bytes
    signing_key: Path
    api_key: str | None = None
    api_keys: Path = Path("var/api-keys.yaml")
    witness: str | None = None
    bounce_listen: str | None = None
    forwarded_allow_ips: str = "127.0.0.1"
    checkpoint_dir: Path | None = None  # None: var/checkpoints

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, create: bool = True) -> "Settings":
        """The settings; `create=False` (commands that only read the record) never makes a
        key file: without HERALD_SECRET or an existing key file, `secret` is then empty."""
        var = var_path(environ)
        if var.exists() and not var.is_dir():
            raise ConfigError(
                f"{var} is not a folder: HERALD_VAR names the folder of Herald's state"
            )
        db_url = database_url(environ)
        smtp_url = environ.get("HERALD_SMTP_URL") or None
        if env_secret := environ.get("HERALD_SECRET"):
            if len(env_secret) < 16:
                raise ConfigError("HERALD_SECRET must be at least 16 characters long")
            secret = env_secret.encode()
        elif create or (var / SECRET_FILE).exists():
            secret = load_or_create_key(var / SECRET_FILE)
        else:
            secret = b""
        signing_key = Path(environ.get("HERALD_SIGNING_KEY") or var / "signing.pem")
        api_key = environ.get("HERALD_API_KEY") or None
        api_keys = Path(environ.get("HERALD_API_KEYS") or var / "api-keys.yaml")
        witness = environ.get("HERALD_WITNESS") or None
        bounce_listen = environ.get("HERALD_BOUNCE_LISTEN") or None
        proxies = environ.get("HERALD_FORWARDED_ALLOW_IPS") or "127.0.0.1"
        checkpoint_dir = environ.get("HERALD_CHECKPOINTS") or None
        return cls(
            var,
            db_url,
            smtp_url,
            secret,
            signing_key,
            api_key,
            api_keys,
            witness,
            bounce_listen,
            proxies,
            Path(checkpoint_dir) if checkpoint_dir else None,
        )

    @property
    def outbox(self) -> Path:
        return self.var / "outbox"

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.var / "checkpoints"


def var_path(environ: Mapping[str, str] = os.environ) -> Path:
    """HERALD_VAR, else ./var."""
    return Path(environ.get("HERALD_VAR") or "var")


def var_chosen(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether HERALD_VAR names where runtime state lives (else ./var, by default)."""
    return bool(environ.get("HERALD_VAR"))


def database_url(environ: Mapping[str, str] = os.environ) -> str:
    """HERALD_DB, else the SQLite file under HERALD_VAR; read alone by commands that must
    find an existing database before anything (such as the key file) is created."""
    return environ.get("HERALD_DB") or f"sqlite:///{var_path(environ) / 'herald.db'}"


def require_private(path: Path) -> None:
    """Refuse a secret file that others can read. Raises ConfigError."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} has permissions {mode:o}; it must be readable by its owner only "
            f"(chmod 600 {path})"
        )


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, creating it (0600, 32 random bytes) on first use.

    Refuses a key file that others can read: the key signs every objection link.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as fp:
                fp.write(secrets.token_hex(32) + "\n")
    require_private(path)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ConfigError(f"{path} holds no usable key; delete it to generate a new one")
    return key.encode()
