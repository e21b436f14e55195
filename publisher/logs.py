"""Configure logging: key=value or JSON lines, with every known secret scrubbed.

Secrets (the Akinon token and password, passwords inside Redis/AMQP URLs, Flower's
passwords) are registered from the settings in the process-wide registry
(`publisher.redact`), which login tokens join as they arrive. Every log record is scrubbed
when it is made (a record factory), so a handler someone else adds (tornado's, in Flower)
writes scrubbed lines too; our own handler's filter scrubs again, for records made before.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import orjson

from publisher import redact
from publisher.config import Settings
from publisher.redis_client import url_secrets

MASK: Final = redact.MASK


def secrets_of(settings: Settings) -> list[str]:
    """Return every secret value the settings hold, longest first."""
    found = []
    if settings.akinon_token is not None:
        found.append(settings.akinon_token.get_secret_value())
    if settings.akinon_password is not None:
        found.append(settings.akinon_password.get_secret_value())
    found.extend(url_secrets(settings.redis_url))
    for url in (settings.amqp_url, settings.akinon_url):
        password = urlsplit(url).password
        if password:
            found.append(password)
    if settings.flower_basic_auth is not None:
        users = settings.flower_basic_auth.get_secret_value().split(",")
        found += [user.partition(":")[2] for user in users]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub_record(record: logging.LogRecord) -> None:
    """Render a record's message and exception text, and mask every registered secret."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the handler reports it, as logging does
        return
    record.msg, record.args = redact.scrub(message), None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text, record.exc_info = redact.scrub(text), None
    elif record.exc_text:
        record.exc_text = redact.scrub(record.exc_text)


class RedactingFilter(logging.Filter):
    """Replace secrets in a record's final message, so no formatter can leak them."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        redact.register(*secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message, scrub it, and keep the record."""
        scrub_record(record)
        return True


_MAKE_RECORD = logging.getLogRecordFactory()


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _MAKE_RECORD(*args, **kwargs)
    scrub_record(record)
    return record


class KeyValueFormatter(logging.Formatter):
    """Write ``time=... level=... logger=... msg="..."`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as key=value pairs."""
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line = (
            f"time={when} level={record.levelname.lower()} logger={record.name} "
            f"msg={orjson.dumps(record.getMessage()).decode()}"
        )
        if record.exc_text:
            line += f" exc={orjson.dumps(record.exc_text).decode()}"
        return line


class JsonFormatter(logging.Formatter):
    """Write one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a JSON object."""
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            document["exc"] = record.exc_text
        return orjson.dumps(document).decode()


def configure_logging(
    settings: Settings | None, *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record through one redacting handler in the configured format."""
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(stream or sys.stderr)
    json_lines = settings is not None and settings.log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    handler.addFilter(RedactingFilter(secrets_of(settings) if settings else []))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_akinon_publisher", False)]:
        root.removeHandler(old)
    handler._akinon_publisher = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper() if settings else "INFO")
    logging.setLogRecordFactory(_scrubbed_record)
    # httpx logs each request URL at INFO; keep that at WARNING to keep step lines readable.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return handler
