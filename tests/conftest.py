"""Shared fixtures: a scratch copy of the shipped project that a test may break."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = "ai-training-notice"


@dataclass
class ScratchProject:
    root: Path

    @property
    def campaign(self) -> Path:
        return self.root / "campaigns" / f"{SHIPPED}.yaml"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def edit(self, relative: str, old: str, new: str, count: int = 1) -> None:
        """Replace `old` by `new` in a project file; fails if `old` is not there."""
        path = self.root / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    def line_of(self, relative: str, needle: str) -> int:
        lines = (self.root / relative).read_text(encoding="utf-8").splitlines()
        return next(i for i, line in enumerate(lines, 1) if needle in line)


@pytest.fixture
def project(tmp_path: Path) -> ScratchProject:
    for folder in ("campaigns", "templates", "locales"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return ScratchProject(tmp_path)
