"""The peer: django-post-office's documented path, at its defaults. I/O: a SQLite file, SMTP.

Run by throughput.py in its own process: configures Django in-process (SQLite file, the
SMTP backend pointed at the bench's sink), migrates, queues N plain-text messages of the
given size with `mail.send_many`, then runs the `send_queued_mail` management command.
Prints one JSON line: queue and send wall seconds, CPU seconds (this process and the
workers it reaped), peak RSS and how many were sent.

    python bench/peer_django.py --port 2525 --messages 1000 --size 6000 --db /tmp/peer.db
"""

import argparse
import json
import resource
import time


def cpu_s() -> float:
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--size", type=int, required=True, help="body bytes per message")
    parser.add_argument("--db", required=True, help="SQLite file")
    parser.add_argument("--lock", required=True, help="send_queued_mail's lock file")
    args = parser.parse_args()
    started, cpu0 = time.perf_counter(), cpu_s()

    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": args.db}},
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=args.port,
        USE_TZ=True,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        LOGGING_CONFIG=None,
        # not a tuning: only where its lock lives, so that runs side by side do not collide
        POST_OFFICE={"LOCK_FILE_NAME": args.lock},
    )
    django.setup()
    from django.core.management import call_command
    from post_office import mail
    from post_office.models import STATUS, Email

    call_command("migrate", verbosity=0)
    setup_s = time.perf_counter() - started
    line = "The same notice, padded to the size of Herald's average message. " * 2
    body = (line[:76] + "\n") * (args.size // 77 + 1)
    start, cpu1 = time.perf_counter(), cpu_s()
    batch = 1000  # send_many in slices: one list of N kwargs would hold the audience in memory
    for first in range(0, args.messages, batch):
        mail.send_many(
            [
                {
                    "sender": "Privacy Team <privacy@example.com>",
                    "recipients": [f"user{i}@example.com"],
                    "subject": "Privacy policy update",
                    "message": body[: args.size],
                }
                for i in range(first, min(first + batch, args.messages))
            ]
        )
    queued = time.perf_counter()
    call_command("send_queued_mail")
    done = time.perf_counter()
    sent = Email.objects.filter(status=STATUS.sent).count()
    print(
        json.dumps(
            {
                "setup_s": setup_s,
                "queue_s": queued - start,
                "send_s": done - queued,
                "cpu_s": cpu_s() - cpu1,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "sent": sent,
                "setup_cpu_s": cpu1 - cpu0,
            }
        )
    )


if __name__ == "__main__":
    main()
