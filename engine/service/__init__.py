"""The service (`herald serve`): FastAPI app for objection links and the in-app feed.

The only fastapi import. Objection pages and API, the feed for apps, API keys, the post
limit and security headers. May import: delivery, evidence, authoring, the store and the
core; never the daemon or the command line.
"""
