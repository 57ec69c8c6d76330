"""Keeping credentials out of logs, console output and MLflow.

Credentials reach Driftline only through the environment (e.g. DATABRICKS_TOKEN, MLFLOW_TRACKING_PASSWORD,
the alert webhook URL in DRIFTLINE_WEBHOOK_URL), Databricks secrets the platform resolves, or Spark
settings of the config's `spark:` section (e.g. a storage account key). Whatever Driftline prints, logs or
sends to MLflow goes through `redact`, which masks
- the values of environment variables whose names look secret (token, secret, password, credential,
  API/access/account key, SAS, signature, private) and of the webhook URL, wherever they appear;
- the user:password part of URLs (`https://user:password@host`, a password holding `@` too), any user
  part of a web or database URL (`https://<token>@host`), and secret-looking URL parameters
  (`?token=...`, `;token=...` of a Spark Connect URL, `sig=...` of a SAS URL);
- the values of secret-looking keys in the resolved config (`redact_tree`).
`install` adds a filter doing this to every logging handler, so library log lines are covered as well.
See docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 8  # shorter environment values are not treated as secrets (too likely to occur by chance)
SECRET_NAME = re.compile(r"secret|passw(or)?d|token|credential|api[_.-]?key|access[_.-]?key|account[_.-]?key|"
                         r"\bsas\b|signature|private", re.IGNORECASE)
SECRET_ENV = ("DRIFTLINE_WEBHOOK_URL",)  # secret by nature: the URL is the credential
# the userinfo runs to the authority's last `@` (a password may hold one); it is masked when it holds a
# password (`user:password@`) or the scheme is a web or database one (`https://<token>@host`); a bare
# `name@` of a storage URL is no credential (abfss://container@account...)
_URL_USERINFO = re.compile(r"(?P<scheme>\b(?P<name>[a-z][a-z0-9+.-]*)://)(?P<info>[^/\s'\"]+)@", re.IGNORECASE)
_TOKEN_SCHEMES = frozenset({"http", "https", "ws", "wss", "sc", "git", "ftp", "ftps", "postgresql", "postgres",
                            "mysql", "jdbc", "mongodb", "redis", "amqp", "amqps"})
_URL_PARAM = re.compile(r"(?P<key>[?&;][\w.-]*(?:token|key|sig|signature|password|secret)[\w.-]*=)[^&;\s'\"]+",
                        re.IGNORECASE)


def secret_values() -> list[str]:
    """The environment's secret-looking values, longest first (so a longer one is masked whole)."""
    values = {v for k, v in os.environ.items()
              if (SECRET_NAME.search(k) or k in SECRET_ENV) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every known secret value, URL credential and secret URL parameter masked."""
    for value in secret_values():
        text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(_userinfo, text)
    return _URL_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)


def _userinfo(m: re.Match) -> str:
    secret = ":" in m["info"] or m["name"].lower() in _TOKEN_SCHEMES
    return f"{m['scheme']}{MASK}@" if secret else m.group(0)


def redact_tree(value: Any) -> Any:
    """A JSON-like structure (e.g. the resolved config) with secret-looking keys' values masked and every
    string redacted."""
    if isinstance(value, Mapping):
        return {k: MASK if isinstance(k, str) and SECRET_NAME.search(k) and isinstance(v, str)
                else redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with `redact` (a filter on a handler sees every logger's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install() -> None:
    """Add the redacting filter to every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
