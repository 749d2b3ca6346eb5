"""Reading a campaign as it was launched, perhaps by an earlier version of Herald. Pure.

A started campaign keeps the files it was launched with (spec_file). It ran, so it must
stay readable whatever Herald reads it later: its report, its evidence pack, its receipts
and its objection pages. The campaign format has since grown, and each growth is listed
here with what an earlier file reads as:
- policy.dpo and policy.legal_basis became required texts (commit 285c025): missing, they
  read as not stated;
- the deadline must leave every recipient policy.min_lead_days (same commit): a launched
  campaign keeps its schedule, with a warning (campaigns._lead_checks).
Nothing else is mended: a key this version does not know, another missing key or a wrong
value still refuses the file, and only reading takes this path (specs.restore): planning
and sending read a stored file as today's format requires.
"""

import copy
from typing import Any

from pydantic import ValidationError

from engine.authoring.campaignspec import Campaign
from engine.authoring.yamlsource import KeyPath, LocatedYaml, dotted
from engine.errors import Problem

NOT_STATED = "(not stated: launched under an earlier format)"
ADDED_TEXTS: frozenset[KeyPath] = frozenset({("policy", "dpo"), ("policy", "legal_basis")})


def read_as_stored(
    data: dict[str, Any], refused: ValidationError, located: LocatedYaml
) -> tuple[Campaign, list[Problem]] | None:
    """The campaign in `data`, which today's format `refused`, with the texts it lacks
    from ADDED_TEXTS read as not stated and a warning for each; None when anything else
    was refused."""
    mended = copy.deepcopy(data)
    notes: list[Problem] = []
    for error in refused.errors():
        loc: KeyPath = tuple(error["loc"])
        if error["type"] != "missing" or loc not in ADDED_TEXTS:
            return None
        section, key = loc  # a key of a section (ADDED_TEXTS), which is there
        mended[str(section)][key] = NOT_STATED
        message = f"{dotted(loc)} is not in the file as launched: read as not stated"
        notes.append(located.problem(loc[:1], message, severity="warning"))
    try:
        return Campaign.model_validate(mended), notes
    except ValidationError:
        return None
