"""Where Herald's CPU goes per email: cProfile of plan and send in one process.

Generates N users in a scratch copy of the project, then profiles `plan` and a one-worker
`send` of the shipped campaign into Postfix's C smtp-sink (aiosmtpd if absent), and prints
the top functions by own time, in microseconds per email. I/O: a scratch directory, a
loopback sink.

    python bench/profile_send.py --users 5000 [--top 25]
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sinks import start_sink
from throughput import CAMPAIGN, EMAIL, INAPP, make_project


def per_email(stats: pstats.Stats, emails: int, top: int, title: str) -> None:
    rows = sorted(
        stats.stats.items(),
        key=lambda kv: kv[1][3 if os.environ.get("BY_CUM") else 2],
        reverse=True,
    )  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in rows)
    print(f"\n{title}: {total * 1e6 / emails:.0f} µs per email in all (own CPU time)")
    print(f"{'own µs':>8} {'cum µs':>8} {'calls':>9}  function")
    for (path, line, name), (_, calls, own, cum, _) in rows[:top]:
        where = f"{Path(path).name}:{line}" if line else path
        print(f"{own * 1e6 / emails:8.1f} {cum * 1e6 / emails:8.1f} {calls:9d}  {name} ({where})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--top", type=int, default=25)
    copy = parser.add_mutually_exclusive_group()
    copy.add_argument("--inapp", action="store_true", help="the in-app-only copy")
    copy.add_argument("--email", action="store_true", help="the email-only copy")
    parser.add_argument("--plain", action="store_true", help="CPU time only, no profiler")
    parser.add_argument("--callers", nargs="*", help="also print the callers of these")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herald-profile-"))
    sink = start_sink()
    try:
        make_project(tmp)
        os.chdir(tmp)
        os.environ.update(
            HERALD_DB=f"sqlite:///{tmp}/herald.db",
            HERALD_SMTP_URL=f"smtp://127.0.0.1:{sink.port}?tls=none",
            HERALD_SECRET="bench-secret-not-for-production",
            HERALD_VAR=f"{tmp}/var",
        )
        from engine.authoring.campaigns import load_campaign, resolve_campaign_path
        from engine.config import Settings
        from engine.delivery import runs
        from engine.delivery.dispatch import SendOptions
        from engine.delivery.planning import plan_campaign
        from engine.delivery.synthetic import generate_users
        from engine.delivery.tokens import Keys
        from engine.store import open_database
        from engine.store.users import insert_users

        settings = Settings.from_env()
        engine = open_database(settings.db_url)
        insert_users(engine, generate_users(args.users, seed=1))
        campaign = INAPP if args.inapp else EMAIL if args.email else CAMPAIGN
        loaded = load_campaign(resolve_campaign_path(campaign))
        keys = Keys(settings.secret)
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        result = plan_campaign(engine, loaded, keys)
        profile.disable()
        emails = result.by_channel["inapp" if args.inapp else "email"]
        per_email(pstats.Stats(profile), emails, args.top, f"plan ({emails} emails)")
        options = SendOptions(max_wait_s=5)
        if args.plain:
            cpu, wall = time.process_time(), time.perf_counter()
            summary = asyncio.run(runs.send(engine, loaded, settings, options))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"send: {cpu * 1e6 / emails:.0f} µs CPU per email, {emails / wall:.0f}/s wall")
            return
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        summary = asyncio.run(runs.send(engine, loaded, settings, options))
        profile.disable()
        print(f"\nsend: {summary.counts}", file=sys.stderr)
        stats = pstats.Stats(profile)
        per_email(stats, emails, args.top, f"send ({campaign})")
        if args.callers:
            for pattern in args.callers:
                stats.print_callers(pattern)
        print(f"sink: {sink.stats()}", file=sys.stderr)
    finally:
        sink.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
