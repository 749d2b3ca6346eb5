"""Reading a campaign as it was launched, perhaps by an earlier version of Herald. Pure.

A started campaign keeps the files it was launched with (spec_file). It ran, so it must
stay readable whatever Herald reads it later: its report, its exports, its receipts and
its objection pages. A later version may require a key the launching one did not know
(policy.dpo came after the first campaigns), or no longer know one it wrote. Read as
stored, such a file loses the unknown key and its missing texts read as not stated; each
is said in a warning. Anything else (a wrong type, a bad value) still refuses it: a
stored file is not one to guess about.
"""

import copy
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.authoring.campaignspec import Campaign
from engine.authoring.yamlsource import KeyPath, LocatedYaml, dotted
from engine.errors import Problem

NOT_STATED = "(not stated: launched under an earlier format)"


def read_as_stored(
    data: dict[str, Any], refused: ValidationError, located: LocatedYaml
) -> tuple[Campaign, list[Problem]] | None:
    """The campaign in `data`, which today's format `refused`, with what it refused
    mended as above and a warning for each mend; None when that is not enough."""
    relaxed = copy.deepcopy(data)
    notes: list[Problem] = []
    for error in refused.errors():
        loc: KeyPath = tuple(error["loc"])
        section = _section(relaxed, loc[:-1])
        if section is None or not loc or not isinstance(key := loc[-1], str):
            return None
        if error["type"] == "extra_forbidden":
            del section[key]
            message = f"unknown to this version of Herald, left out: {key!r}"
            notes.append(located.problem(loc, message, key=True, severity="warning"))
        elif error["type"] == "missing" and _is_text(loc):
            section[key] = NOT_STATED
            message = f"{dotted(loc)} is not in the file as launched: read as not stated"
            notes.append(located.problem(loc[:-1], message, severity="warning"))
        else:
            return None
    try:
        return Campaign.model_validate(relaxed), notes
    except ValidationError:
        return None


def _section(data: dict[str, Any], loc: KeyPath) -> dict[str, Any] | None:
    """The mapping at `loc` in `data`, if there is one (a list item is not a section)."""
    found: Any = data
    for part in loc:
        found = found.get(part) if isinstance(found, dict) and isinstance(part, str) else None
    return found if isinstance(found, dict) else None


def _is_text(loc: KeyPath) -> bool:
    """Whether the key at `loc` is a plain text field of the campaign format."""
    model: type[BaseModel] = Campaign
    for i, part in enumerate(loc):
        field = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return False
        if i == len(loc) - 1:
            return field.annotation is str
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return False
        model = field.annotation
    return False
