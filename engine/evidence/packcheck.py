"""`herald evidence verify PACK`: an exported pack checked offline, with no database.
I/O: files.

In order: the manifest's signature and every file's hash; the checkpoints (signatures by
a trusted key, their chain); the events against every checkpoint's root; the recipients
against the events; and every figure of report.json re-derived from the events alone.
The first thing that does not hold is named by file, line or figure.
"""

import hashlib
import json
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.canonical import Frontier, canonical, leaf_hash, parse_canonical
from engine.evidence.checkpoints import (
    KEYS_FILE,
    fingerprint,
    read_rotations,
    unb64,
    verify_signature,
)
from engine.evidence.derive import Derivation, differences, report_figures
from engine.evidence.pack import MANIFEST_CONTEXT
from engine.evidence.signing import trusted_keys
from engine.evidence.verify import Broken, Trust, Verdict, check_file


@dataclass
class PackVerdict:
    campaign: str = ""
    events: int = 0
    checkpoints: int = 0
    unsigned: int = 0
    key: str = ""
    pinned: bool = False
    figures: list[tuple[str, Any, Any]] = field(default_factory=list)  # (path, derived, stated)
    problem: str | None = None


@contextmanager
def opened(path: Path) -> Iterator[Path]:
    """A pack folder, or a .zip unpacked to a private temporary folder."""
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.startswith("/") or ".." in Path(name).parts:
                raise Broken(f"{path}: unsafe member name {name!r}")
        archive.extractall(scratch)
        yield Path(scratch)


def check_pack(path: Path, pinned: bytes | None, witness: Path | None) -> PackVerdict:
    verdict = PackVerdict(pinned=pinned is not None)
    try:
        with opened(path) as folder:
            _check(folder, pinned, witness, verdict)
    except Broken as exc:
        verdict.problem = str(exc)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        verdict.problem = f"{path}: {exc}"
    return verdict


def _check(folder: Path, pinned: bytes | None, witness: Path | None, v: PackVerdict) -> None:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise Broken("manifest.json: missing; this is not an evidence pack")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except ValueError as exc:
        raise Broken(f"manifest.json: not JSON ({exc})") from None
    wanted = {"v", "type", "campaign", "created_at", "files", "key", "sig"}
    if not isinstance(manifest, dict) or set(manifest) != wanted:
        raise Broken(f"manifest.json: expected the keys {', '.join(sorted(wanted))}")
    fields = {k: val for k, val in manifest.items() if k != "sig"}
    key = unb64(manifest["key"])
    if not verify_signature(key, unb64(manifest["sig"]), MANIFEST_CONTEXT + canonical(fields)):
        raise Broken("manifest.json: bad signature")
    v.campaign, v.key = manifest["campaign"], fingerprint(key)
    _holds_exactly(
        folder, dict(manifest["files"]), "the manifest", but=frozenset({"manifest.json"})
    )
    rotations = list(read_rotations(folder / KEYS_FILE))
    trust = Trust(trusted_keys(pinned if pinned else key, rotations), pinned is not None)
    if key not in trust.keys:
        raise Broken("manifest.json: signed by a key that is not the pinned key")
    scratch = Verdict(v.campaign)
    signed = check_file(folder / "checkpoints.jsonl", trust, scratch, linked=True)
    if witness is not None:
        signed += check_file(witness / f"{v.campaign}.jsonl", trust, scratch, linked=False)
    v.checkpoints = len(signed)
    if not signed:
        raise Broken("checkpoints.jsonl: no signed checkpoint")
    by_size: dict[int, list[Any]] = {}
    for source_path, cp in signed:
        by_size.setdefault(cp.size, []).append((source_path, cp))
    derivation, tree, started = Derivation(), Frontier(), None
    with (folder / "events.jsonl").open("rb") as fp:
        for number, line in enumerate(fp, 1):
            body = line.rstrip(b"\n")
            where = f"events.jsonl:{number}"
            record = parse_canonical(body)
            if not isinstance(record, dict):
                raise Broken(f"{where}: not canonical JSON (RFC 8785)")
            if record.get("seq") != number or record.get("campaign") != v.campaign:
                raise Broken(f"{where}: expected seq {number} of campaign {v.campaign}")
            tree.append(leaf_hash(body))
            if record.get("kind") == "started":
                started = record.get("data")
            for source, cp in by_size.get(tree.size, ()):
                if tree.root().hex() != cp.root:
                    raise Broken(
                        f"{where}: the events up to here do not give the root signed by "
                        f"{source.name}:{cp.line}"
                    )
            try:
                derivation.feed(record)
            except ValueError as exc:
                raise Broken(f"{where}: {exc}") from None
    last = max(by_size)
    if last > tree.size:
        raise Broken(f"events.jsonl: {tree.size} events, but a checkpoint signed {last}")
    v.events, v.unsigned = tree.size, tree.size - last
    _spec(folder / "spec", started)
    _recipients(folder / "recipients.jsonl", derivation)
    stated = report_figures(json.loads((folder / "report.json").read_text("utf-8")))
    derived = derivation.figures()
    wrong = differences(derived, stated)
    if wrong:
        figure, a, b = wrong[0]
        raise Broken(f"report.json{figure}: {b!r}, the events give {a!r}")
    v.figures = _flat(derived)


def _spec(spec: Path, started: Any) -> None:
    """spec/ holds exactly the files the campaign's `started` event bound (DESIGN section
    8), each with the SHA-256 it bound: the manifest is signed by the sender, the event is
    in the signed log."""
    bound = started.get("files") if isinstance(started, dict) else None
    if not isinstance(bound, dict):
        raise Broken("events.jsonl: no `started` event binding the campaign's files")
    _holds_exactly(spec, bound, "the `started` event", shown="spec/")


def _holds_exactly(
    folder: Path,
    listed: dict[str, str],
    where: str,
    shown: str = "",
    but: frozenset[str] = frozenset(),
) -> None:
    """`folder` holds exactly the files `listed` (path: SHA-256) names, `but` those."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - but
    for name in sorted(present | set(listed)):
        if name not in listed:
            raise Broken(f"{shown}{name}: not in {where}")
        if name not in present:
            raise Broken(f"{shown}{name}: listed in {where}, missing from the pack")
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != listed[name]:
            raise Broken(f"{shown}{name}: its SHA-256 differs from {where}'s")


def _recipients(path: Path, derivation: Derivation) -> None:
    expected = derivation.recipients()
    with path.open("rb") as fp:
        for number, line in enumerate(fp, 1):
            record = json.loads(line)
            where = f"recipients.jsonl:{number}"
            subject = record.get("subject")
            want = expected.pop(subject, None)
            if want is None:
                raise Broken(f"{where}: subject {str(subject)[:12]}… has no notice in the events")
            got = {k: record.get(k) for k in ("country", "locale", "channels")}
            if got != want:
                what = next(k for k in want if want[k] != got[k])
                raise Broken(f"{where}: `{what}` differs from what the events say")
    if expected:
        subject = next(iter(expected))
        raise Broken(f"recipients.jsonl: subject {subject[:12]}… of the events is missing")


def _flat(figures: dict[str, Any], path: str = "") -> list[tuple[str, Any, Any]]:
    rows: list[tuple[str, Any, Any]] = []
    for key, value in figures.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{path}/{key}")
        else:
            rows.append((f"{path}/{key}", value, value))
    return rows
