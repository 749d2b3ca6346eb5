"""`python -m engine` runs the Herald command line."""

from engine.cli import main

main()
