"""A campaign's spec: the exact files that decide what users are sent. Reads and writes files.

A launched campaign keeps its spec: the files are stored with it (`spec_file` table) and
restored into a folder of their own, so editing `templates/` or `locales/` afterwards can
neither change what the rest of the audience gets nor break a running campaign.
"""

import hashlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from engine.authoring.campaigns import PAGES, Campaign, LoadedCampaign, Project, load_campaign
from engine.errors import CampaignError, Problem
from engine.models import SpecFile


def notice_folders(campaign: Campaign) -> tuple[str, ...]:
    """The folders of templates/ a notice renders from (with messages.po)."""
    return (campaign.template, "layouts")


def objection_folders(campaign: Campaign) -> tuple[str, ...]:
    """The folders of templates/ the objection pages and confirmations render from (with
    objection.po)."""
    return (campaign.objection.template, PAGES, "layouts")


def template_folders(campaign: Campaign) -> tuple[str, ...]:
    """The folders of templates/ a campaign's spec holds: both sides' (validate holds each
    side's templates to its own)."""
    return tuple(dict.fromkeys((*notice_folders(campaign), *objection_folders(campaign))))


def spec_files(loaded: LoadedCampaign) -> list[SpecFile]:
    """The YAML, the template folders (template_folders), and every catalog and glossary.
    Raises CampaignError on a symbolic link among them (link_problems)."""
    paths, links = _spec_paths(loaded)
    if links:
        raise CampaignError([_linked(link) for link in links])
    return [SpecFile(_relative(path, loaded.project), path.read_bytes()) for path in paths]


def link_problems(loaded: LoadedCampaign) -> list[Problem]:
    """A symbolic link in the spec's folders, or one of them a link, is refused: Jinja and
    the catalogs read through it, but the spec walk does not follow one into a folder,
    so what it holds was rendered and sent without being bound to the campaign or stored
    with it (and a linked template folder stored its files under the wrong names)."""
    return [_linked(link) for link in _spec_paths(loaded)[1]]


def _linked(link: Path) -> Problem:
    return Problem(
        link,
        "a symbolic link: a campaign's files must be the files themselves, in its own "
        "folders (copy what it points to)",
    )


def _spec_paths(loaded: LoadedCampaign) -> tuple[list[Path], list[Path]]:
    """(files, symbolic links) of the spec; compiled catalogs (.mo) under locales/ are not
    read by Herald and left out, a .mo elsewhere is a file like any other."""
    project = loaded.project
    files, links = [loaded.path], []
    folders = [project.templates / name for name in template_folders(loaded.campaign)]
    for folder in [*folders, project.locales]:
        if folder.is_symlink():
            links.append(folder)
            continue
        found: list[Path] = []
        for root, dirs, names in os.walk(folder):  # does not follow links into folders
            links += [Path(root) / d for d in dirs if (Path(root) / d).is_symlink()]
            for name in names:
                path = Path(root) / name
                (links if path.is_symlink() else found).append(path)
        if folder == project.locales:
            found = [p for p in found if p.suffix != ".mo"]
        files += sorted(found)
    return files, sorted(links)


def spec_hash(files: Iterable[SpecFile] | LoadedCampaign) -> str:
    """SHA-256 over the files' names and contents, in path order."""
    if isinstance(files, LoadedCampaign):
        files = spec_files(files)
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.path):
        digest.update(file.path.encode() + b"\0")
        digest.update(bytes.fromhex(file.sha256))
    return digest.hexdigest()


def changes(stored: Mapping[str, str], current: Iterable[SpecFile]) -> list[str]:
    """What differs between stored {path: sha256} and the current files, one line each."""
    now = {f.path: f.sha256 for f in current}
    lines = [f"changed {p}" for p in sorted(now) if p in stored and stored[p] != now[p]]
    lines += [f"added {p}" for p in sorted(now.keys() - stored.keys())]
    lines += [f"removed {p}" for p in sorted(stored.keys() - now.keys())]
    return lines


def spec_folder(var: Path, campaign_id: str, digest: str) -> Path:
    """Where a launched campaign's files are restored: one folder per spec."""
    return var / "specs" / f"{campaign_id}-{digest[:16]}"


def restore(
    campaign_id: str, files: Sequence[SpecFile], folder: Path, *, reading: bool = False
) -> LoadedCampaign:
    """Write the stored files under `folder` (once) and load the campaign from there.
    `reading`: for a report, an export, a receipt or an objection page, where a file an
    earlier version launched reads as asstored.py lists; planning and sending do not."""
    names = {f"{campaign_id}.yaml", f"{campaign_id}.yml"}
    campaign_file = next(
        (f.path for f in files if f.path.rpartition("/")[2] in names and f.path.count("/") <= 1),
        None,
    )
    if campaign_file is None:
        raise FileNotFoundError(f"no {campaign_id}.yaml among the files stored with the campaign")
    marker = folder / ".complete"
    if not marker.exists():
        for file in files:
            target = folder / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            # unique per thread too: a daemon restores from more than one thread
            temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
            temporary.write_bytes(file.content)
            temporary.replace(target)
        marker.touch()
    return load_campaign(folder / campaign_file, Project(folder), stored=reading)


def _relative(path: Path, project: Project) -> str:
    resolved, root = path.resolve(), project.root.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else path.name
