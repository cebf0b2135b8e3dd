"""Keeping tokens out of logs, errors, saved configs and reports.

Sources register the token values they read from the environment; `redact` masks them (and any
`access_token=`, `key=`, ... query value) in any text, and a logging filter applies it to log records.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_QUERY_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(access_token|key|api_key|apikey|token|signature|sig)=([^&\s'\"#<>)]+)"
)
_URLLIB3_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` (and the log filter) masks it wherever it appears."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)
            _SECRETS.add(quote(value, safe=""))


def redact(text: object, secrets: Iterable[str] = ()) -> str:
    """`text` with every known token value and every `access_token=`/`key=`/... query value as `***`."""
    out = str(text)
    with _SECRETS_LOCK:
        known = sorted(_SECRETS | {s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    for s in known:
        out = out.replace(s, "***")
    return _QUERY_SECRET.sub(r"\1=***", out)


class _RedactingFilter(logging.Filter):
    """Rewrites records of loggers that print URLs (urllib3 at DEBUG) with the secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = _RedactingFilter()


def install_log_redaction(*logger_names: str) -> None:
    """Mask secrets in the records of urllib3/requests (they log full URLs at DEBUG) and of `logger_names`."""
    for name in (*_URLLIB3_LOGGERS, *logger_names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
