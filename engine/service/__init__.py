"""The service (`herald serve`): FastAPI app for objection links and the in-app feed.

The only fastapi import. Objection pages (app) and the JSON API (api), what a request
may carry (inputs), the body and failed-token limits (limits), API keys, headers and the
access log (security), local Swagger UI (docs). May import: delivery, evidence,
authoring, the store and the core; never the daemon or the command line.
"""
