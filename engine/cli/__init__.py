"""The `herald` command line. The only package that writes to the terminal.

Exit codes: 0 success, 1 input rejected (every reason on stderr), 2 usage error.
"""

from engine.cli import authoring, delivery, evidence, operations  # noqa: F401  (registers the commands)
from engine.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
