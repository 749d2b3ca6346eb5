"""Delivery: from a launched campaign to messages handed to a channel.

The audience (user files, synthetic users), planning (one delivery per targeted user and
channel), the dispatcher that claims due deliveries and packs them (MIME skeletons, tokens),
send windows and rate limits, the channels (`channels/`: outbox, SMTP, in-app, memory), and
`runs`, which `herald send`, `herald demo` and the daemon share to run a campaign.

May import: evidence (every writer signs its checkpoints), authoring, the store and the core.
"""
