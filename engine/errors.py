"""Every exception the engine raises on purpose. Pure: no I/O.

EngineError
├── CampaignError     a campaign, its templates or its catalogs are wrong → fix the files;
│                     carries every Problem found, so all are reported together
├── TemplateError     a template failed to render (undefined variable, syntax) → fix templates/
├── ConfigError       settings missing or wrong → raised at startup; stops everything
│   └── TransportConfigError  the server rejected *our* setup (auth, TLS) → stops the run
├── EvidenceError     the evidence log or its checkpoints do not hold together → stop
│                     signing; `herald evidence verify` names what broke
└── DeliveryError     one message on one channel failed → recorded; the run goes on
    ├── TemporaryDeliveryError   4xx, timeouts, dropped connections → retried with backoff
    └── PermanentDeliveryError   5xx, refused recipient → final; may trigger the fallback

TransportConfigError is deliberately not a DeliveryError: an expired SMTP password is
not a fact about 10,000 recipients, and must never mark them failed.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    path: Path | str
    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    key: str = ""  # dotted key path in YAML, msgid in a catalog, template name...
    severity: str = "error"  # "error" stops a launch; "warning" is reported only

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key}:" if self.key else ""
        label = "" if self.severity == "error" else f" {self.severity}:"
        return f"{where}:{label}{key} {self.message}"


class EngineError(Exception):
    """Base class: `except EngineError` catches every failure we anticipated."""


class CampaignError(EngineError):
    """A campaign file (or what it refers to) is invalid; holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TemplateError(EngineError):
    """A template could not be rendered for one locale and channel."""

    def __init__(self, template: str, locale: str, reason: str, line: int | None = None):
        self.template, self.locale, self.reason, self.line = (
            template,
            locale,
            reason,
            line,
        )
        where = f"templates/{template}" + (f":{line}" if line else "")
        super().__init__(f"{where}: [{locale}] {reason}")


class ConfigError(EngineError):
    """A setting is missing or invalid; names the variable or file."""


class EvidenceError(EngineError):
    """The database's events do not extend the signed checkpoints: nothing is signed."""


class TransportConfigError(ConfigError):
    """The transport cannot work with our settings (credentials, TLS, outbox folder)."""


class DeliveryError(EngineError):
    """One message could not be delivered; `reason` is kept as evidence. `maybe_delivered`:
    the server may have taken it all the same (the connection was lost while waiting for
    its answer to the message), so a later send may be a duplicate."""

    temporary: bool = False

    def __init__(self, reason: str, maybe_delivered: bool = False) -> None:
        self.reason, self.maybe_delivered = reason, maybe_delivered
        super().__init__(reason)


class TemporaryDeliveryError(DeliveryError):
    temporary = True


class PermanentDeliveryError(DeliveryError):
    temporary = False


class UnreachableError(TemporaryDeliveryError):
    """Our first hop (the SMTP relay) could not be reached or would not talk: nothing was
    said about the recipient, so the attempt does not count against them (it would fail
    them all after an outage of a few hours); retried like any temporary error."""
