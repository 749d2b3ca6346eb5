"""Herald: a notification campaign engine for compliance teams."""

__version__ = "0.1.0"
