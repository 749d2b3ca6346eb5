"""Bounces: return paths read back, DSN parsing, the receiver and the mailbox ingester.

Sits between the daemon/service and delivery: it may import delivery, evidence,
authoring, store and the core, and is imported only by the daemon and the CLI.
"""
