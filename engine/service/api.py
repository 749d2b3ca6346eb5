"""The service's JSON API: objecting by automated means, and the in-app feed. I/O: HTTP.

    POST /api/objections                  objects with a link's token (GDPR Art. 21(5))
    GET  /api/users/{id}/notifications    the in-app feed (API key)
    POST /api/notifications/{id}/seen     records `seen` once (API key with feed+seen)

Every status a route can answer is in the OpenAPI description.
"""

import datetime as dt
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from engine.service.inputs import MAX_ID, clean_text, decode_cursor, encode_cursor
from engine.service.security import ApiKey, ApiKeys
from engine.store import objections as store

_Refuse = Callable[[Request], float | None]


class ObjectionRequest(BaseModel):
    token: str = Field(description="The token of the user's objection link.")
    reason: str | None = Field(
        None, description="Optional, never required; kept up to 10,000 characters."
    )


class ObjectionResult(BaseModel):
    status: Literal["recorded", "already_recorded"]
    purpose: str = Field(description="The processing purpose objected to.")
    campaign: str = Field(description="The campaign whose link carried the objection.")
    objected_at: dt.datetime = Field(description="When it was recorded (the first time).")


class Notification(BaseModel):
    id: int
    campaign: str
    locale: str
    title: str
    body: str
    objection_url: str
    created_at: dt.datetime
    seen_at: dt.datetime | None


class NotificationPage(BaseModel):
    items: list[Notification]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class Problem(BaseModel):
    detail: str


def _answer(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


_TOO_LARGE = _answer("The body is over the service's limit (64 KB unless configured)")
_UNREADABLE = _answer("The body is not JSON, or not UTF-8")
_NO_KEY = _answer("No valid X-API-Key header")


def add_api(app: FastAPI, service: Any, refused: _Refuse) -> None:
    """The API routes over `service` (engine.service.app.Service). `refused(request)`
    counts a failed token lookup and says how long the client must wait, if at all."""
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    keys: ApiKeys = service.api_keys

    def app_key(presented: Annotated[str | None, Security(api_key_header)]) -> ApiKey:
        key = keys.find(presented)
        if key is None:
            raise HTTPException(
                401, "a valid X-API-Key header is required", {"WWW-Authenticate": "ApiKey"}
            )
        return key

    @app.post(
        "/api/objections",
        response_model=ObjectionResult,
        status_code=201,
        responses={
            200: {"model": ObjectionResult, "description": "Already on record (first date)"},
            400: _UNREADABLE,
            404: _answer("The token is not genuine, known and current"),
            413: _TOO_LARGE,
            429: _answer("Too many failed tokens from this address; see Retry-After"),
            503: _answer("The campaign's files cannot be read now; try again later"),
        },
        tags=["objections"],
    )
    def object_by_api(request: Request, body: ObjectionRequest) -> Any:
        """Object for a user by automated means (GDPR Art. 21(5)), with the token of
        their link. Recording is idempotent: a repeat answers 200 with the first date.
        A genuine token is never rate-limited; failed ones are, per client."""
        target = service.objections.resolve(body.token)
        if target is None:
            wait = refused(request)
            if wait is not None:
                return JSONResponse(
                    {"detail": "too many requests"}, 429, {"Retry-After": str(int(wait + 0.999))}
                )
            raise HTTPException(404, "the token is not valid: unknown, altered or expired")
        recorded = service.objections.object(target, target.notice.locale, body.reason, via="api")
        result = ObjectionResult(
            status="recorded" if recorded.first else "already_recorded",
            purpose=recorded.objection["purpose"],
            campaign=recorded.objection["campaign_id"],
            objected_at=_when(recorded.objection["objected_at"]),
        )
        return JSONResponse(result.model_dump(mode="json"), 201 if recorded.first else 200)

    @app.get(
        "/api/users/{user_id}/notifications",
        response_model=NotificationPage,
        responses={
            400: _answer("The cursor is not one this API gave out"),
            401: _NO_KEY,
        },
        tags=["in-app feed"],
    )
    def feed(
        user_id: str,
        key: Annotated[ApiKey, Security(app_key)],
        cursor: Annotated[str | None, Query(description="From the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> NotificationPage:
        """A user's in-app notices and confirmations, newest first, localized as they
        were delivered, with their objection link and when they were seen."""
        before = None
        if cursor is not None:
            before = decode_cursor(cursor)
            if before is None:
                raise HTTPException(400, "cursor: not one this API gave out")
        if clean_text(user_id) != user_id:  # no user id holds what no database stores
            return NotificationPage(items=[], next_cursor=None)
        rows = store.notifications(service.engine, user_id, key.campaigns, before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return NotificationPage(
            items=[_notification(r) for r in rows],
            next_cursor=encode_cursor(rows[-1]["id"]) if more else None,
        )

    @app.post(
        "/api/notifications/{notification_id}/seen",
        response_model=Notification,
        responses={
            401: _NO_KEY,
            403: _answer("The key may read the feed but not record `seen`"),
            404: _answer("No such notification among the key's campaigns"),
        },
        tags=["in-app feed"],
    )
    def seen(
        notification_id: Annotated[int, Path(ge=1, le=MAX_ID)],
        key: Annotated[ApiKey, Security(app_key)],
    ) -> Notification:
        """Record that the user saw this notification; the first time only. The event
        names the key that recorded it."""
        if not key.may_mark_seen:
            raise HTTPException(403, "this key is read-only (access: feed)")
        row = store.mark_seen(service.engine, notification_id, key.campaigns, time.time(), key.name)
        if row is None:
            raise HTTPException(404, "no such notification")
        return _notification(row)


def _when(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _notification(row: dict[str, Any]) -> Notification:
    return Notification(
        id=row["id"],
        campaign=row["campaign_id"],
        locale=row["locale"],
        title=row["title"],
        body=row["body"],
        objection_url=row["objection_url"],
        created_at=_when(row["created_at"]),
        seen_at=_when(row["seen_at"]) if row["seen_at"] is not None else None,
    )
