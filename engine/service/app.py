"""`herald serve`: the objection pages and the in-app feed API. I/O: HTTP (FastAPI).

    GET  /object/{token}                  the summary and one button; records nothing
    POST /object/{token}                  records the objection, confirms at once
    /api/...                              the JSON API (engine.service.api)

Pages are rendered from the campaign as it was launched, in the notice's language
unless the user picks another of the campaign's languages. Once an objection is
recorded, the user is told so, whatever else fails.
"""

import asyncio
import contextlib
import dataclasses
import html
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from babel.messages.pofile import PoFileError
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Engine

from engine.authoring.campaigns import PAGES, SLUG, STYLESHEET, Project, load_campaign
from engine.authoring.i18n import SOURCE_LOCALE, Catalogs, normalize_locale, text_direction
from engine.authoring.pages import Page, busy_page, confirmed_page, error_page, object_page
from engine.authoring.rendering import Renderer
from engine.config import Settings
from engine.delivery.tokens import Keys
from engine.errors import EngineError
from engine.evidence.signing import keep_signed, signer_for
from engine.service.api import add_api
from engine.service.docs import add_docs
from engine.service.inputs import FormError, parse_multipart, parse_urlencoded
from engine.service.limits import MAX_BODY, BodyLimit, FailureLimit, client_key
from engine.service.objections import Objections, Target, UnavailableError
from engine.service.security import ApiKeys, Guard

log = logging.getLogger("herald.serve")
_SHARED_STYLESHEET = f'href="/static/{STYLESHEET}"'  # as pages/base.html links it
_ID = re.compile(SLUG)  # a campaign id
_RECORDED = ("Your objection is on record", "Thank you. We have recorded your objection.")
_UNAVAILABLE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Please try again shortly</title>\n</head>\n<body>\n<main>\n"
    "<h1>Please try again shortly</h1>\n<p>This page cannot be shown right now. "
    "Nothing has been recorded. Please open your link again in a few minutes.</p>\n"
    "</main>\n</body>\n</html>\n"
)


@dataclass(frozen=True)
class _Pages:
    """A launched campaign's page renderer and the languages its pages offer."""

    renderer: Renderer
    locales: tuple[str, ...]


class Service:
    """Everything the routes share: the store, the keys, the renderers, the limit."""

    def __init__(
        self, settings: Settings, engine: Engine, project: Project, failures_per_minute: int
    ) -> None:
        self.engine = engine
        self.objections = Objections(engine, Keys(settings.secret), settings.var)
        self.api_keys = ApiKeys.load(settings.api_key, settings.api_keys)
        catalogs = Catalogs.objection(project.locales)
        self.renderer = Renderer(project.templates, catalogs)
        self.locales = tuple(sorted(catalogs.available))
        self.contacts = _contacts(project)
        self.stylesheet = (project.templates / PAGES / STYLESHEET).read_bytes()
        self.failures = FailureLimit(failures_per_minute)
        self.recorded_pages = {code: _recorded_page(catalogs, code) for code in self.locales}
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

    def forget(self, target: Target) -> None:
        """After a page failed: check and restore the campaign's files on next use."""
        self._pages.pop(target.notice.campaign_id, None)
        self.objections.forget(target.notice.campaign_id)

    def render(
        self,
        renderer: Renderer,
        page: Page,
        headers: dict[str, str] | None = None,
        campaign: str | None = None,
    ) -> HTMLResponse:
        """`campaign`: a launched campaign's page, styled by the stylesheet launched with it
        (campaign_stylesheet), not by the one in the folder the service runs in."""
        html = renderer.render_page(page.context["locale"], page.template, page.context)
        if campaign is not None:
            html = html.replace(_SHARED_STYLESHEET, f'href="/static/{campaign}/{STYLESHEET}"')
        language = page.context["locale"].replace("_", "-")
        return HTMLResponse(
            html, page.status, headers={"Content-Language": language, **(headers or {})}
        )

    def refuse(self, request: Request) -> HTMLResponse:
        """The answer to a token that is not genuine, known and current: one page for
        all (so it tells nothing), or, after too many from this client, wait."""
        wait = self.refused(request)
        locale = _choose(request.query_params.get("lang"), _accepted(request), self.locales)
        if wait is not None:
            page = busy_page(locale, self.locales)
            return self.render(self.renderer, page, {"Retry-After": str(math.ceil(wait))})
        return self.render(self.renderer, error_page(locale, self.locales, self.contacts))

    def refused(self, request: Request) -> float | None:
        """Count a failed lookup; the seconds this client must wait, if it must."""
        client = client_key(request.client.host if request.client else "-")
        wait = self.failures.blocked(client)
        self.failures.fail(client)
        return wait

    def show(self, target: Target, lang: str | None, status: int = 200) -> Response:
        """The objection page. A campaign whose files fail is restored and tried once
        more; if it still fails, a page saying to come back (nothing was recorded)."""
        for _ in range(2):
            try:
                pages = self.pages_for(target)
                locale = _choose(lang, [target.notice.locale], pages.locales)
                on_record = self.objections.on_record(target)
                objected = target.local_date(on_record["objected_at"]) if on_record else None
                page = object_page(target.loaded.campaign, locale, pages.locales, objected)
                page = dataclasses.replace(page, status=status)
                return self.render(pages.renderer, page, campaign=target.notice.campaign_id)
            except (EngineError, OSError) as exc:
                log.error("cannot show campaign %s's page: %s", target.notice.campaign_id, exc)
                self.forget(target)
                try:
                    again = self.objections.launched(target.notice.campaign_id)
                except UnavailableError:
                    again = None
                if again is None:
                    break
                target = Target(again, target.notice)
        return unavailable()

    def confirm(self, target: Target, reason: str | None, lang: str | None) -> Response:
        """Record the objection and confirm it."""
        try:
            pages: _Pages | None = self.pages_for(target)
        except (EngineError, OSError):
            pages = None
        have = pages.locales if pages else self.locales
        locale = _choose(lang, [target.notice.locale], have)
        recorded = self.objections.object(target, locale, reason, via="page")
        if pages is None:
            return self.recorded(locale)
        try:
            objected = target.local_date(recorded.objection["objected_at"])
            page = confirmed_page(
                target.loaded.campaign, locale, pages.locales, objected, recorded.first
            )
            return self.render(pages.renderer, page, campaign=target.notice.campaign_id)
        except Exception:  # the objection is on record: never answer that it failed
            log.exception(
                "objection recorded; its page failed (campaign %s)", target.notice.campaign_id
            )
            self.forget(target)
            return self.recorded(locale)

    def recorded(self, locale: str) -> HTMLResponse:
        """The plain page that says an objection is on record, needing no campaign file."""
        code = locale if locale in self.recorded_pages else SOURCE_LOCALE
        body = self.recorded_pages.get(code) or _recorded_page(None, SOURCE_LOCALE)
        return HTMLResponse(body, 200, headers={"Content-Language": code.replace("_", "-")})


def create_app(
    settings: Settings,
    engine: Engine,
    project: Project,
    failures_per_minute: int = 10,
    max_body: int = MAX_BODY,
    docs: bool = False,
    sign_every_s: float = 30.0,
) -> FastAPI:
    """The service's ASGI app. Raises ConfigError for an unusable API key file or
    signing key. While it runs, what it recorded is signed every `sign_every_s`."""
    service = Service(settings, engine, project, failures_per_minute)
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
        docs_url=None,
        redoc_url=None,
        lifespan=signing,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body)
    app.add_middleware(Guard)  # outermost: it heads and logs the limit's answers too
    app.state.api_keys = service.api_keys

    @app.exception_handler(UnavailableError)
    def campaign_unavailable(request: Request, exc: UnavailableError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "try again later"}, 503, {"Retry-After": "300"})
        return unavailable()

    @app.api_route("/object/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    def objection_page(request: Request, token: str, lang: str | None = None) -> Response:
        target = service.objections.resolve(token)
        if target is None:
            return service.refuse(request)
        return service.show(target, lang)

    @app.post("/object/{token}", include_in_schema=False)
    async def objection_form(request: Request, token: str) -> Response:
        # The token first: a failed one costs no body read. A genuine one is never
        # limited, so no one can stop a real user from objecting.
        target = await run_in_threadpool(service.objections.resolve, token)
        if target is None:
            return await run_in_threadpool(service.refuse, request)
        try:
            fields = await _form(request, max_body)
        except FormError:
            # Bytes we cannot read as text: say so, and offer the button again (a
            # reason is never required). Nothing is recorded from unreadable input.
            lang = request.query_params.get("lang")
            return await run_in_threadpool(service.show, target, lang, 400)
        return await run_in_threadpool(
            service.confirm, target, fields.get("reason"), fields.get("lang")
        )

    add_api(app, service, service.refused)

    @app.api_route("/static/herald.css", methods=["GET", "HEAD"], include_in_schema=False)
    def stylesheet() -> Response:
        return Response(
            service.stylesheet, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    @app.api_route(
        "/static/{campaign_id}/herald.css", methods=["GET", "HEAD"], include_in_schema=False
    )
    def campaign_stylesheet(campaign_id: str) -> Response:
        """The stylesheet a campaign launched with: its pages are bound to it, and one
        edited in the service's folder afterwards (to hide the form) reaches none of them."""
        try:
            loaded = (
                service.objections.launched(campaign_id) if _ID.fullmatch(campaign_id) else None
            )
            css = (loaded.project.templates / PAGES / STYLESHEET).read_bytes() if loaded else None
        except (UnavailableError, OSError):
            return unavailable()
        if css is None:
            return Response(status_code=404)
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @app.get("/healthz", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    if docs:
        add_docs(app)
    return app


async def _form(request: Request, max_part_size: int) -> dict[str, str]:
    """The form's text fields, decoded strictly. Raises FormError."""
    kind = request.headers.get("content-type", "")
    body = await request.body()
    if kind.startswith("multipart/form-data"):
        return parse_multipart(body, kind, max_part_size)
    if kind.startswith("application/x-www-form-urlencoded") or body:
        return parse_urlencoded(body)
    return {}


def unavailable() -> HTMLResponse:
    """A page that needs no campaign file: come back later, nothing was recorded."""
    return HTMLResponse(_UNAVAILABLE, 503, headers={"Retry-After": "300"})


def _recorded_page(catalogs: Catalogs | None, locale: str) -> str:
    """A page that needs no campaign file: the objection is on record, in `locale`."""
    gettext: Callable[[str], str] = str
    if catalogs is not None:
        try:
            gettext = catalogs.translations(locale).gettext
        except (OSError, ValueError, PoFileError) as exc:
            log.warning("the %s catalog cannot be read (%s): English it is", locale, exc)
    title, thanks = (html.escape(gettext(text)) for text in _RECORDED)
    return (
        f'<!DOCTYPE html>\n<html lang="{locale.replace("_", "-")}" '
        f'dir="{text_direction(locale)}">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{title}</title>\n<link rel="stylesheet" href="/static/herald.css">\n'
        f"</head>\n<body>\n<main>\n<h1>{title}</h1>\n<p>{thanks}</p>\n</main>\n</body>\n</html>\n"
    )


def _choose(wanted: str | None, preferred: list[str], have: tuple[str, ...]) -> str:
    """`wanted` if offered, else the first of `preferred` (or its language) we have."""
    for candidate in ([wanted] if wanted else []) + preferred:
        code = normalize_locale(candidate[:35])
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
