#!/usr/bin/env python3
"""Stand-alone verifier of a Herald evidence pack (format v1).

    python3 verify.py PACK_FOLDER [--public-key KEY.pem]

Needs Python 3.11+ and the `cryptography` package, nothing of Herald's. It checks the signed
manifest and every file's hash, the signed checkpoints and their chain, every checkpoint's
root against the events, spec/ against the files the `started` event bound, recipients.jsonl
against the events, and every figure of report.json re-derived from the events. Exit 0 when
all hold; 1 naming the first that does not. The format is in Herald's docs/evidence.md.
"""

import argparse
import base64
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FINAL = {"sent", "delivered", "failed", "bounced"}
NOTIFIED = {"sent", "delivered"}
STATUS = {"planned", "deferred", *FINAL}


class Broken(Exception):
    pass


def jcs(value):
    """RFC 8785 for Herald's values (no floats; ASCII keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """A compact range: appends in O(log n), the root at any time."""

    def __init__(self, size=0, hashes=()):
        self.size, self.hashes = size, list(hashes)

    def append(self, leaf):
        self.hashes.append(leaf)
        size = self.size
        while size & 1:
            right = self.hashes.pop()
            self.hashes[-1] = node(self.hashes[-1], right)
            size >>= 1
        self.size += 1

    def root(self):
        if not self.hashes:
            return hashlib.sha256(b"").digest()
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node(left, root)
        return root


def signed(key_b64, sig_b64, data):
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64)).verify(
            base64.b64decode(sig_b64), data
        )
    except (ValueError, InvalidSignature):
        return False
    return True


def trusted_keys(anchor_b64, keys_file):
    keys = {anchor_b64}
    if keys_file.exists():
        for line in keys_file.read_bytes().splitlines():
            r = json.loads(line)
            fields = {k: r[k] for k in ("v", "type", "old", "new", "at")}
            data = b"herald key rotation v1\n" + jcs(fields)
            if r["old"] in keys and signed(r["old"], r["sig_old"], data):
                if signed(r["new"], r["sig_new"], data):
                    keys.add(r["new"])
    return keys


def check_spec(spec, bound):
    """spec/ holds exactly the files the `started` event bound, with their SHA-256."""
    if not isinstance(bound, dict):
        raise Broken("events.jsonl: no `started` event binding the campaign's files")
    present = {p.relative_to(spec).as_posix() for p in spec.rglob("*") if p.is_file()}
    for name in sorted(present | set(bound)):
        if name not in bound or name not in present:
            raise Broken(f"spec/{name}: in the pack or bound by `started`, not both")
        if hashlib.sha256((spec / name).read_bytes()).hexdigest() != bound[name]:
            raise Broken(f"spec/{name}: its SHA-256 differs from the one `started` bound")


def check(folder, pinned_b64):
    raw = (folder / "manifest.json").read_bytes().rstrip(b"\n")
    manifest = json.loads(raw)
    fields = {k: v for k, v in manifest.items() if k != "sig"}
    if not signed(manifest["key"], manifest["sig"], b"herald manifest v1\n" + jcs(fields)):
        raise Broken("manifest.json: bad signature")
    listed = manifest["files"]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    present.discard("manifest.json")
    for name in sorted(present | set(listed)):
        if name not in listed or name not in present:
            raise Broken(f"{name}: in the pack or the manifest, not both")
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != listed[name]:
            raise Broken(f"{name}: its SHA-256 differs from the manifest's")
    keys = trusted_keys(pinned_b64 or manifest["key"], folder / "keys.jsonl")
    if manifest["key"] not in keys:
        raise Broken("manifest.json: not signed by the pinned key")
    campaign = manifest["campaign"]

    checkpoints, previous = {}, None
    for number, line in enumerate((folder / "checkpoints.jsonl").read_bytes().splitlines(), 1):
        where = f"checkpoints.jsonl:{number}"
        cp = json.loads(line)
        body = {k: v for k, v in cp.items() if k != "sig"}
        if not signed(cp["key"], cp["sig"], b"herald checkpoint v1\n" + jcs(body)):
            raise Broken(f"{where}: bad signature")
        if cp["key"] not in keys:
            raise Broken(f"{where}: signed by a key that is not trusted")
        if cp["prev"] != (hashlib.sha256(previous).hexdigest() if previous else None):
            raise Broken(f"{where}: `prev` does not name the line before")
        if Tree(cp["size"], [bytes.fromhex(h) for h in cp["range"]]).root().hex() != cp["root"]:
            raise Broken(f"{where}: its range does not give its root")
        if cp["campaign"] != campaign:
            raise Broken(f"{where}: another campaign's checkpoint")
        checkpoints.setdefault(cp["size"], []).append((where, cp["root"]))
        previous = line
    if not checkpoints:
        raise Broken("checkpoints.jsonl: no signed checkpoint")

    tree, deliveries, counts, started = Tree(), {}, Counter(), {}
    with (folder / "events.jsonl").open("rb") as fp:
        for number, line in enumerate(fp, 1):
            body, where = line.rstrip(b"\n"), f"events.jsonl:{number}"
            event = json.loads(body)
            if jcs(event) != body:
                raise Broken(f"{where}: not canonical JSON")
            if event["seq"] != number or event["campaign"] != campaign:
                raise Broken(f"{where}: out of sequence or of another campaign")
            tree.append(hashlib.sha256(b"\x00" + body).digest())
            for source, root in checkpoints.get(tree.size, ()):
                if tree.root().hex() != root:
                    raise Broken(f"{where}: the events up to here do not give {source}'s root")
            kind, data, delivery = event["kind"], event["data"], event["delivery"]
            if kind == "started":
                started = data
            elif kind in ("seen", "objected"):
                counts[kind] += 1
            if kind not in STATUS or delivery is None:
                continue
            if kind == "planned":
                deliveries[delivery] = {
                    "subject": event["subject"], "channel": event["channel"],
                    "notice": data.get("message") != "confirmation",
                    "country": data.get("country", ""), "locale": data.get("locale", ""),
                    "fell_back": bool(data.get("fell_back")), "status": "planned",
                    "first": None, "message_id": None, "content_sha256": None,
                    "duplicate": False,
                }  # fmt: skip
                continue
            d = deliveries.get(delivery)
            if d is None:
                raise Broken(f"{where}: `{kind}` for a delivery never planned")
            if d["status"] in ("delivered", "failed", "bounced") or (
                d["status"] == "sent" and kind != "bounced"
            ):
                raise Broken(f"{where}: `{kind}` after the final `{d['status']}`")
            d["status"] = kind
            if kind in NOTIFIED:
                d["first"] = d["first"] or event["at"]
                d["message_id"], d["content_sha256"] = (
                    data.get("message_id"),
                    data.get("content_sha256"),
                )
                d["duplicate"] = data.get("possible_duplicate") is True
    if max(checkpoints) > tree.size:
        raise Broken(f"events.jsonl: {tree.size} events, a checkpoint signed {max(checkpoints)}")
    check_spec(folder / "spec", started.get("files"))

    subjects = {}
    for d in deliveries.values():
        if not d["notice"]:
            continue
        s = subjects.setdefault(
            d["subject"],
            {"country": "", "locale": "", "channels": {}, "fell_back": False, "first": None},
        )
        s["country"], s["locale"] = max(s["country"], d["country"]), max(s["locale"], d["locale"])
        s["fell_back"] |= d["fell_back"]
        notified = d["status"] in NOTIFIED
        s["channels"][d["channel"]] = {
            "status": d["status"] if d["status"] in FINAL else "open",
            "at": d["first"] if notified else None,
            "message_id": d["message_id"] if notified else None,
            "content_sha256": d["content_sha256"] if notified else None,
        }
        if d["first"] and notified and (s["first"] is None or d["first"] < s["first"]):
            s["first"] = d["first"]

    unseen = set(subjects)
    for number, line in enumerate((folder / "recipients.jsonl").read_bytes().splitlines(), 1):
        r = json.loads(line)
        s = subjects.get(r["subject"])
        if s is None or r["subject"] not in unseen:
            raise Broken(f"recipients.jsonl:{number}: a subject the events do not have")
        unseen.discard(r["subject"])
        for key in ("country", "locale", "channels"):
            if r[key] != s[key]:
                raise Broken(f"recipients.jsonl:{number}: `{key}` differs from the events")
    if unseen:
        raise Broken("recipients.jsonl: a subject of the events is missing")

    derived = figures(subjects, deliveries, counts, started)
    report = json.loads((folder / "report.json").read_text("utf-8"))
    for name, value in derived.items():
        stated = stated_figure(report, name)
        if stated != value:
            raise Broken(f"report.json/{name}: {stated!r}, the events give {value!r}")
    return campaign, tree.size, max(checkpoints), derived


def figures(subjects, deliveries, counts, started):
    deadline = started.get("schedule", {}).get("deadline", "~")
    effective = started.get("policy", {}).get("effective_date")
    effective = f"{effective}T00:00:00.000Z" if effective else "~"
    out = Counter()
    by_country, by_locale = {}, {}
    for s in subjects.values():
        statuses = [c["status"] for c in s["channels"].values()]
        notified = any(x in NOTIFIED for x in statuses)
        outcome = "notified" if notified else "failed" if "open" not in statuses else "pending"
        for c in (out, by_country.setdefault(s["country"], Counter()),
                  by_locale.setdefault(s["locale"], Counter())):  # fmt: skip
            c["targeted"] += 1
            c[outcome] += 1
        out["fell_back_locale"] += s["fell_back"]
        first = s["first"]
        out["notified_before_deadline"] += bool(first and first < deadline)
        out["notified_before_effective_date"] += bool(first and first < effective)
    channels = {}
    for d in deliveries.values():
        if d["notice"]:
            status = d["status"] if d["status"] in FINAL else "open"
            channels.setdefault(d["channel"], Counter())[status] += 1
            out["possible_duplicates"] += d["status"] in NOTIFIED and d["duplicate"]
    keys = ("targeted", "notified", "failed", "pending")
    totals = (*keys, "notified_before_deadline", "notified_before_effective_date")
    result = {k: out[k] for k in (*totals, "fell_back_locale", "possible_duplicates")}
    result["seen"], result["objected"] = counts["seen"], counts["objected"]
    for channel, n in channels.items():
        for status, count in n.items():
            result[f"channels/{channel}/{status}"] = count
    for name, table in (("by_country", by_country), ("by_locale", by_locale)):
        for key, n in table.items():
            for k in keys:
                result[f"{name}/{key}/{k}"] = n[k]
    return result


def stated_figure(report, name):
    parts = name.split("/")
    if parts[0] == "channels":
        counts = report["channels"].get(parts[1], {})
        if parts[2] == "open":
            return sum(v for k, v in counts.items() if k not in FINAL) or None
        return counts.get(parts[2]) or None
    value = report
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--public-key", type=Path)
    args = parser.parse_args()
    pinned = None
    if args.public_key:
        key = serialization.load_pem_public_key(args.public_key.read_bytes())
        pinned = base64.b64encode(key.public_bytes_raw()).decode()
    else:
        print("WARNING: no --public-key: trusting the key in the pack", file=sys.stderr)
    try:
        campaign, events, signed, derived = check(args.pack, pinned)
    except (Broken, OSError, ValueError, KeyError) as exc:
        print(f"BROKEN {args.pack}: {exc}", file=sys.stderr)
        return 1
    unsigned = f", {events - signed} after the last signed checkpoint" if events > signed else ""
    print(f"OK {campaign}: {events} events{unsigned}; every figure below re-derived from them")
    for name, value in sorted(derived.items()):
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
