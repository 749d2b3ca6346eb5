"""Evidence: what proves who was told what, when, in which language and by which channel.

Verifying the event chain, signed checkpoints, the coverage report and campaign status.

May import: authoring, the store and the core. Delivery, the daemon and the service write
events through the store and sign through this package, never the other way round.
"""
