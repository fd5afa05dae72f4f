"""Message compliance gateway: checks every message against declarative policies."""

__version__ = "0.1.0"
