"""The daemon: APScheduler runs every campaign in campaigns/ (the only apscheduler import).

Watching campaign files, planning at `schedule.start`, dispatch ticks, replanning when users
change, heartbeats and checkpoints. May import: delivery, evidence, authoring, the store and
the core; never the service or the command line.
"""
