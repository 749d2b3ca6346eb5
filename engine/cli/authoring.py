"""Authoring commands: validate, preview, schema. Read files; write to the terminal."""

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import app, err, fail, importing, out
from engine.errors import CampaignError, EngineError
from engine.models import Channel, LocaleChoice, LocaleSource, User

# The authoring layer (pydantic, Jinja2, Babel) is imported inside each command, so that
# `herald --help` and every other command start without it (see cli/common.py).


@app.command("validate")
def validate_command(
    campaigns: Annotated[
        list[str],
        typer.Argument(help="Campaign files or ids (default: every file in campaigns/)."),
    ] = [],  # noqa: B006
) -> None:
    """Check campaigns, templates and translations before launch."""
    with importing():
        from engine.authoring import validated
        from engine.authoring.campaigns import resolve_campaign_path
        from engine.authoring.validation import validate
        from engine.config import var_chosen, var_path

    paths = [resolve_campaign_path(c) for c in campaigns] or sorted(
        Path("campaigns").glob("*.yaml")
    )
    if not paths:
        fail("no campaign files given and none in ./campaigns/")
    failed = 0
    for path in paths:
        before = validated.spec_now(path)  # what the checks see, at the latest
        report = validate(path)
        for problem in report.problems:
            err.print(str(problem), markup=False)
        if report.errors:
            failed += 1
            err.print(
                f"FAILED {path}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)",
                style="bold red",
                markup=False,
            )
        else:
            assert report.loaded is not None  # no errors: the campaign loaded
            if before is not None:
                warnings = [str(w) for w in report.warnings]
                var = var_path()
                validated.remember(var, report.loaded, warnings, before, create=var_chosen())
            out.print(
                f"OK {path}: {len(report.locales)} locales, {report.renders} renders "
                f"checked, {len(report.warnings)} warning(s)",
                markup=False,
            )
    if failed:
        raise typer.Exit(1)


@app.command("preview")
def preview_command(
    campaign: Annotated[str, typer.Argument(help="Campaign file or id.")],
    locale: Annotated[
        list[str],
        typer.Option(
            "--locale",
            "-l",
            help="Locale(s) to render (default: the sample user's choice; "
            "with --out, every locale).",
        ),
    ] = [],  # noqa: B006
    channel: Annotated[Channel | None, typer.Option(help="Only this channel.")] = None,
    name: Annotated[str, typer.Option(help="The sample user's name.")] = "Maria Example",
    country: Annotated[str, typer.Option(help="The sample user's country (ISO code).")] = "DE",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write HTML pages here.")] = None,
) -> None:
    """Render a campaign locally, to the terminal or as HTML pages side by side."""
    from rich.panel import Panel
    from rich.text import Text

    from engine.authoring.campaigns import PAGES, load_campaign, resolve_campaign_path
    from engine.authoring.i18n import Catalogs
    from engine.authoring.outputscan import SAMPLE_TOKEN
    from engine.authoring.preview import LocalePreview, objection_preview, write_preview
    from engine.authoring.rendering import Renderer

    try:
        loaded = load_campaign(resolve_campaign_path(campaign))
        c = loaded.campaign
        catalogs = Catalogs(loaded.project.locales)
        renderer = Renderer(loaded.project.templates, catalogs)
        user = User("preview", "preview@example.com", name or None, country.upper(), None)
        unknown = [loc for loc in locale if loc not in catalogs.available]
        if unknown:
            fail(
                f"no catalog for locale(s) {', '.join(unknown)}; "
                f"available: {', '.join(sorted(catalogs.available))}"
            )
        if locale:
            choices = [LocaleChoice(loc, LocaleSource.USER, False) for loc in locale]
        elif out_dir is not None:
            choices = [
                LocaleChoice(loc, LocaleSource.USER, False) for loc in sorted(catalogs.available)
            ]
        else:
            choices = [renderer.choose(c, user)]
        channels = [channel] if channel else [*c.channels]
        url = c.objection.url.format(token=SAMPLE_TOKEN)
        previews = [
            LocalePreview(
                choice.locale,
                tuple(
                    renderer.render(c, user, ch, objection_url=url, locale=choice)
                    for ch in channels
                ),
            )
            for choice in choices
        ]
        if out_dir is not None:
            pages = Renderer(loaded.project.templates, Catalogs.objection(loaded.project.locales))
            previews = [objection_preview(c, pages, user, p, url) for p in previews]
    except CampaignError as exc:
        fail(exc.problems)
    except EngineError as exc:
        fail(str(exc))
    if out_dir is not None:
        index = write_preview(
            out_dir,
            c.id,
            f"{name or '(no name)'}, {country}",
            previews,
            loaded.project.templates / PAGES / "herald.css",
        )
        out.print(
            f"wrote {len(previews)} locale(s) x {len(channels)} channel(s) to "
            f"{out_dir}; open {index}",
            markup=False,
        )
        return
    for preview in previews:
        for message in preview.messages:
            how = message.locale
            body = Text(message.subject, style="bold")
            body.append("\n\n" + message.text.rstrip(), style="not bold")
            # Wrapped, not soft-wrapped: a panel would cut each paragraph at its border.
            out.print(
                Panel(
                    body,
                    title=f"{message.channel.value} · {how.locale} ({how.source.value})",
                    title_align="left",
                ),
                soft_wrap=False,
            )


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of campaign files, for editors."""
    from engine.authoring.campaigns import campaign_json_schema

    print(campaign_json_schema())  # noqa: T201 - machine-readable output, no rich wrapping
