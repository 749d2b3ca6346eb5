"""Validations that passed, remembered, so that `herald plan` after `herald validate` does
not check the same files again. I/O: var/validated/.

A validation is a pure function of the campaign's files (its spec hash: the YAML, the
templates, the catalogs, the glossary) and of the Herald that ran it (its code and data,
the Python and the libraries that parse and render). `herald validate` and `herald plan`
record each campaign that passed, with its warnings, in var/validated/<id>.json; `plan`
takes a record whose spec hash and Herald both match for its own validation, and
validates again on any difference (an edited catalog, Herald or Jinja2 upgraded, Herald's
code edited in place). The daemon does the same in memory: a file is validated once per
version.

It saves a launch what dominated it: validation renders every language for sample users
(~0.6 s of `herald plan`'s ~2 s at 17,495 users, 26 languages; bench/throughput.py). A
record is a shortcut, not a proof: whoever can write var/ could forge one, as they could
run any code; the evidence binds what was actually sent (DESIGN section 8).
"""

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path

import engine
from engine.authoring.campaigns import LoadedCampaign, load_campaign
from engine.authoring.specs import spec_hash
from engine.errors import CampaignError

FOLDER = "validated"
# What else decides a validation's outcome: how YAML is read and checked, and how
# templates and catalogs render (Herald's own code and data are hashed whole).
_LIBRARIES = ("PyYAML", "pydantic", "Jinja2", "MarkupSafe", "Babel")


@functools.cache
def herald_fingerprint() -> str:
    """SHA-256 over this Herald's files (every file of the `engine` package), the Python
    version and the versions of the libraries that decide a validation. ~3 ms."""
    digest = hashlib.sha256(sys.version.encode())
    for name in _LIBRARIES:
        digest.update(f"\0{name}={importlib.metadata.version(name)}".encode())
    package = Path(engine.__file__).parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(b"\0" + path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def record_path(var: Path, campaign_id: str) -> Path:
    return var / FOLDER / f"{campaign_id}.json"


def spec_now(path: Path) -> str | None:
    """The spec hash of the campaign file at `path` and its files as they are now; None
    when it does not load (validate says why). Taken before a validation begins."""
    try:
        return spec_hash(load_campaign(path))
    except (CampaignError, OSError):
        return None


def remember(
    var: Path, loaded: LoadedCampaign, warnings: list[str], validated: str, *, create: bool
) -> None:
    """Record that `loaded` passed with these warnings, if its files still hash to
    `validated`, their hash from before the validation began: a file changed while it
    ran may have been checked as it was or as it is. Into an existing var/, or one made
    when `create` (HERALD_VAR names it, or the command makes it anyway): validating a
    checkout leaves nothing behind. Best effort: a var/ that cannot be written costs the
    next plan a validation, nothing else."""
    if (not create and not var.is_dir()) or spec_hash(loaded) != validated:
        return
    record = {
        "campaign": loaded.campaign.id,
        "spec_hash": validated,
        "herald": herald_fingerprint(),
        "warnings": warnings,
    }
    path = record_path(var, loaded.campaign.id)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        temporary.replace(path)  # whole or not at all: a reader never sees half a record
    except OSError:
        with contextlib.suppress(OSError):  # var/ may be no folder at all
            temporary.unlink(missing_ok=True)


def recall(var: Path, loaded: LoadedCampaign, digest: str) -> list[str] | None:
    """The warnings of a validation that passed on exactly these files (`digest`, their
    spec hash) with this Herald; None when there is none (no record, another spec or
    Herald, an unreadable record)."""
    try:
        record = json.loads(record_path(var, loaded.campaign.id).read_text(encoding="utf-8"))
        warnings = record["warnings"]
        same = (
            record["campaign"] == loaded.campaign.id
            and record["herald"] == herald_fingerprint()
            and record["spec_hash"] == digest
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return None
    return warnings
