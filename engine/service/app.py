"""`herald serve`: the objection pages and the in-app feed API. I/O: HTTP (FastAPI).

    GET  /object/{token}                  the summary and one button; records nothing
    POST /object/{token}                  records the objection, confirms at once
    POST /api/objections                  the same for tools (GDPR Art. 21(5)), JSON
    GET  /api/users/{id}/notifications    the in-app feed (API key)
    POST /api/notifications/{id}/seen     records `seen` once (API key)

Pages are rendered from the campaign as it was launched, in the notice's language
unless the user picks another of the campaign's languages.
"""

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from engine.authoring.campaigns import PAGES, Project, load_campaign
from engine.authoring.i18n import SOURCE_LOCALE, Catalogs, normalize_locale
from engine.authoring.pages import Page, busy_page, confirmed_page, error_page, object_page
from engine.authoring.rendering import Renderer
from engine.config import Settings
from engine.delivery.tokens import Keys
from engine.errors import EngineError
from engine.evidence.signing import keep_signed, signer_for
from engine.service.objections import Objections, Target
from engine.service.security import ApiKey, ApiKeys, Guard, PostLimit
from engine.store import objections as store


class ObjectionRequest(BaseModel):
    token: str = Field(description="The token of the user's objection link.")
    reason: str | None = Field(None, description="Optional, any length; never required.")


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


@dataclass(frozen=True)
class _Pages:
    """A launched campaign's page renderer and the languages its pages offer."""

    renderer: Renderer
    locales: tuple[str, ...]


class Service:
    """Everything the routes share: the store, the keys, the renderers."""

    def __init__(self, settings: Settings, engine: Engine, project: Project) -> None:
        self.engine = engine
        self.objections = Objections(engine, Keys(settings.secret), settings.var)
        self.api_keys = ApiKeys.load(settings.api_key, settings.api_keys)
        catalogs = Catalogs.objection(project.locales)
        self.renderer = Renderer(project.templates, catalogs)
        self.locales = tuple(sorted(catalogs.available))
        self.contacts = _contacts(project)
        self.stylesheet = (project.templates / PAGES / "herald.css").read_bytes()
        self._pages: dict[str, _Pages] = {}

    def pages_for(self, target: Target) -> _Pages:
        campaign_id = target.notice.campaign_id
        if campaign_id not in self._pages:
            spec = target.loaded.project
            catalogs = Catalogs.objection(spec.locales)
            notices = Catalogs(spec.locales).available
            self._pages[campaign_id] = _Pages(
                Renderer(spec.templates, catalogs), tuple(sorted(catalogs.available & notices))
            )
        return self._pages[campaign_id]

    def render(
        self, renderer: Renderer, page: Page, headers: dict[str, str] | None = None
    ) -> HTMLResponse:
        html = renderer.render_page(page.context["locale"], page.template, page.context)
        language = page.context["locale"].replace("_", "-")
        return HTMLResponse(
            html, page.status, headers={"Content-Language": language, **(headers or {})}
        )

    def error(self, request: Request) -> HTMLResponse:
        """The one page for any token that is not genuine, known and current."""
        locale = _choose(request.query_params.get("lang"), _accepted(request), self.locales)
        return self.render(self.renderer, error_page(locale, self.locales, self.contacts))

    def busy(self, request: Request, wait: float) -> HTMLResponse:
        locale = _choose(request.query_params.get("lang"), _accepted(request), self.locales)
        page = busy_page(locale, self.locales)
        return self.render(self.renderer, page, {"Retry-After": _seconds(wait)})


def create_app(
    settings: Settings,
    engine: Engine,
    project: Project,
    posts_per_minute: int = 10,
    sign_every_s: float = 30.0,
) -> FastAPI:
    """The service's ASGI app. Raises ConfigError for an unusable API key file or
    signing key. While it runs, what it recorded is signed every `sign_every_s`."""
    service = Service(settings, engine, project)
    posts = PostLimit(posts_per_minute)
    signer_for(settings)  # refuse to start with a missing or replaced signing key

    @contextlib.asynccontextmanager
    async def signing(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(keep_signed(settings, engine, stop, sign_every_s))
        try:
            yield
        finally:
            stop.set()
            await task

    app = FastAPI(
        title="Herald",
        summary="Objection links and the in-app feed of Herald's campaigns.",
        version="1",
        redoc_url=None,
        lifespan=signing,
    )
    app.add_middleware(Guard)
    app.state.api_keys = service.api_keys
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

    def app_key(presented: Annotated[str | None, Security(api_key_header)]) -> ApiKey:
        key = service.api_keys.find(presented)
        if key is None:
            raise HTTPException(
                401, "a valid X-API-Key header is required", {"WWW-Authenticate": "ApiKey"}
            )
        return key

    @app.get("/object/{token}", include_in_schema=False)
    def objection_page(request: Request, token: str, lang: str | None = None) -> Response:
        target = service.objections.resolve(token)
        if target is None:
            return service.error(request)
        pages = service.pages_for(target)
        locale = _choose(lang, [target.notice.locale], pages.locales)
        on_record = service.objections.on_record(target)
        objected = target.local_date(on_record["objected_at"]) if on_record else None
        page = object_page(target.loaded.campaign, locale, pages.locales, objected)
        return service.render(pages.renderer, page)

    @app.post("/object/{token}", include_in_schema=False)
    async def objection_form(request: Request, token: str) -> Response:
        # Read here, not by FastAPI: a form too large to parse (a reason of megabytes)
        # still objects, without the reason, instead of answering 400.
        try:
            form = await request.form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        except (HTTPException, StarletteHTTPException, MultiPartException):
            fields = {}
        return await run_in_threadpool(
            objection_post, request, token, fields.get("reason"), fields.get("lang")
        )

    def objection_post(
        request: Request, token: str, reason: str | None, lang: str | None
    ) -> Response:
        wait = posts.allow(_client(request))
        if wait is not None:
            return service.busy(request, wait)
        target = service.objections.resolve(token)
        if target is None:
            return service.error(request)
        pages = service.pages_for(target)
        locale = _choose(lang, [target.notice.locale], pages.locales)
        recorded = service.objections.object(target, locale, reason, via="page")
        objected = target.local_date(recorded.objection["objected_at"])
        page = confirmed_page(
            target.loaded.campaign, locale, pages.locales, objected, recorded.first
        )
        return service.render(pages.renderer, page)

    @app.post(
        "/api/objections",
        response_model=ObjectionResult,
        status_code=201,
        responses={
            200: {"model": ObjectionResult, "description": "Already on record (first date)"},
            404: {"description": "The token is not genuine, known and current"},
            429: {"description": "Too many posts from this address; see Retry-After"},
        },
        tags=["objections"],
    )
    def object_by_api(request: Request, body: ObjectionRequest) -> Any:
        """Object for a user by automated means (GDPR Art. 21(5)), with the token of
        their link. Recording is idempotent: a repeat answers 200 with the first date."""
        wait = posts.allow(_client(request))
        if wait is not None:
            return JSONResponse(
                {"detail": "too many requests"}, 429, {"Retry-After": _seconds(wait)}
            )
        target = service.objections.resolve(body.token)
        if target is None:
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
        responses={401: {"description": "No valid API key"}},
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
        before = _decode_cursor(cursor) if cursor else None
        rows = store.notifications(service.engine, user_id, key.campaigns, before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return NotificationPage(
            items=[_notification(r) for r in rows],
            next_cursor=_encode_cursor(rows[-1]["id"]) if more else None,
        )

    @app.post(
        "/api/notifications/{notification_id}/seen",
        response_model=Notification,
        responses={401: {"description": "No valid API key"}, 404: {"description": "Unknown"}},
        tags=["in-app feed"],
    )
    def seen(notification_id: int, key: Annotated[ApiKey, Security(app_key)]) -> Notification:
        """Record that the user saw this notification; the first time only."""
        row = store.mark_seen(service.engine, notification_id, key.campaigns, time.time())
        if row is None:
            raise HTTPException(404, "no such notification")
        return _notification(row)

    @app.get("/static/herald.css", include_in_schema=False)
    def stylesheet() -> Response:
        return Response(
            service.stylesheet, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    @app.get("/healthz", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _choose(wanted: str | None, preferred: list[str], have: tuple[str, ...]) -> str:
    """`wanted` if offered, else the first of `preferred` (or its language) we have."""
    for candidate in ([wanted] if wanted else []) + preferred:
        code = normalize_locale(candidate)
        for option in (code, code.split("_")[0] if code else None):
            if option in have:
                return option
    return SOURCE_LOCALE if SOURCE_LOCALE in have or not have else have[0]


def _accepted(request: Request) -> list[str]:
    """The browser's languages (Accept-Language), most wanted first."""
    weighted = []
    for i, part in enumerate(request.headers.get("accept-language", "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, i, tag))
    return [tag for _, _, tag in sorted(weighted)]


def _seconds(wait: float) -> str:
    return str(math.ceil(wait))


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


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


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"before:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix == "before" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise HTTPException(400, "cursor: not one this API gave out")


def _contacts(project: Project) -> list[str]:
    """Whom a user with a broken link can write to: the campaigns' DPO contacts."""
    found: list[str] = []
    for path in sorted(project.campaigns.glob("*.y*ml")):
        try:
            contact = load_campaign(path, project).campaign.policy.dpo
        except (EngineError, OSError):
            continue
        if contact and contact not in found:
            found.append(contact)
    return found
