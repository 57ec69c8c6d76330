"""Errors Driftline raises for bad input: each names the key, column or table and says what to do."""


class DriftlineError(Exception):
    """Base class: an error a user can act on (printed without a stack trace by the CLI)."""


class ConfigError(DriftlineError):
    """A config key is missing, malformed or inconsistent with the data."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class DataError(DriftlineError):
    """A table or column does not hold what the monitor needs."""


class ReportingError(DriftlineError):
    """The results are stored, but logging them to MLflow failed; `driftline report` re-logs them."""
