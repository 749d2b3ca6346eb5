"""The `herald` command line. The only package that writes to the terminal.

Exit codes: 0 success, 1 input rejected (every reason on stderr), 2 usage error.
Commands parse arguments, call one function of a layer below and print; any layer may be
imported from here, and nothing imports this package.
"""

from engine.cli import (  # noqa: F401  (registers the commands)
    authoring,
    bounces,
    delivery,
    evidence,
    operations,
    privacy,
    service,
)
from engine.cli.common import app, run_as_process

__all__ = ["app", "main"]


def main() -> None:
    run_as_process()
