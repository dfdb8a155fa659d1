"""Structured logs: one JSON object a line, with the conversation id, personal data redacted.

Both servers get the same configuration (`logging_config`), written to a
YAML file and passed with Rasa's ``--logging-config-file`` (see
`bot/serve.py`). Every record becomes::

    {"ts": "2026-11-23T15:37:34.123Z", "level": "INFO", "service": "rasa",
     "logger": "bot.channels.desk", "message": "...", "conversation_id": "c-001"}

plus ``exception`` (the traceback) when there is one and the fields of a
structured (structlog) record from Rasa. ``conversation_id`` comes from a
context variable that the handoff desk sets for each customer message (and
the action server for each action call), so every line logged while that
message is handled carries it, whichever module logs it.

The message, the exception and every extra field pass `core.redaction.redact`
(cards, IBANs, e-mails, phones, account numbers, PINs) and lose anything that
looks like a credential (``token=...``, ``password: ...``, ``Authorization:
Bearer ...``, the password of ``scheme://user:password@host``) before they are written.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import logging.config
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from core.redaction import redact

CONVERSATION_ID: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("conversation_id", default=None)

_CREDENTIAL = re.compile(
    r"(?i)((?:auth[_-]?token|api[_-]?key|access[_-]?token|token|password|passwd|secret|signing[_-]?secret)"
    r"[\"']?\s*[=:]\s*[\"']?|authorization:\s*(?:bearer|basic)\s+|\bbearer\s+)([^\s&\"',;]+)"
)
# Attributes every LogRecord has; anything else was passed with `extra=` and is written as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "conversation_id"}


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")


def scrub(text: str) -> str:
    """`text` without personal data and without credential values."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + "[SECRET]@", text)
    return _CREDENTIAL.sub(lambda m: m.group(1) + "[SECRET]", redact(text))


@contextlib.contextmanager
def conversation(conversation_id: Optional[str]) -> Iterator[None]:
    """Log everything inside the block under `conversation_id`."""
    token = CONVERSATION_ID.set(str(conversation_id) if conversation_id is not None else None)
    try:
        yield
    finally:
        CONVERSATION_ID.reset(token)


class ConversationFilter(logging.Filter):
    """Adds ``conversation_id`` (from the context, or None) to every record; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "conversation_id", None) is None:
            record.conversation_id = CONVERSATION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, personal data and credentials scrubbed."""

    def __init__(self, service: str = "assistant", **kwargs: Any) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        entry: Dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": message,
            "conversation_id": getattr(record, "conversation_id", None) or CONVERSATION_ID.get(),
        }
        if message.startswith("{") and message.endswith("}"):  # Rasa's structlog renders JSON itself
            try:
                fields = json.loads(message)
            except ValueError:
                fields = None
            if isinstance(fields, dict):
                entry["message"] = str(fields.pop("event", ""))
                fields.pop("level", None)
                entry["fields"] = fields
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a customer's text may hold U+2028, U+0085 or other characters that
        # log shippers (and str.splitlines) take for line ends, which would split an entry.
        return json.dumps(_scrubbed(entry), ensure_ascii=True, default=str)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(str(value))


class JsonHandler(logging.StreamHandler):
    """Writes JSON lines to standard output (`JsonFormatter` and `ConversationFilter` built in)."""

    def __init__(self, service: str = "assistant", stream: Any = None) -> None:
        super().__init__(stream or sys.stdout)
        self.setFormatter(JsonFormatter(service))
        self.addFilter(ConversationFilter())


def logging_config(service: str, level: str = "INFO") -> Dict[str, Any]:
    """The `logging.config.dictConfig` configuration of one server (``rasa`` or ``actions``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "json": {"()": "core.logs.JsonHandler", "service": service},
            "errors": {"()": "core.metrics.ErrorCountHandler"},
        },
        "root": {"level": level, "handlers": ["json", "errors"]},
        "loggers": {
            # Sanic's own text handlers go (its records reach the JSON handler through the root);
            # its access log and per-request chatter stay out. Rasa keeps its level (LOG_LEVEL).
            "sanic.root": {"level": "INFO", "handlers": [], "propagate": True},
            "sanic.error": {"level": "INFO", "handlers": [], "propagate": True},
            "sanic.access": {"level": "WARNING", "handlers": [], "propagate": True},
            "asyncio": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            "matplotlib": {"level": "WARNING"},
        },
    }


def write_logging_config(folder: Path, service: str, level: str = "INFO") -> Path:
    """Write `logging_config(service)` as YAML into `folder`; the path for ``--logging-config-file``."""
    import yaml

    path = Path(folder) / f"logging-{service}.yml"
    path.write_text(yaml.safe_dump(logging_config(service, level), sort_keys=False))
    return path


def configured_file_from_argv(argv: Optional[List[str]] = None) -> Optional[str]:
    """The ``--logging-config-file`` this process was started with, if any."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg in ("--logging-config-file", "--logging-config_file") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--logging-config-file="):
            return arg.split("=", 1)[1]
    return None


def reapply_configured_logging(argv: Optional[List[str]] = None) -> bool:
    """Apply the process's ``--logging-config-file`` again; whether there was one.

    ``rasa run`` applies the file and then installs coloredlogs, which
    replaces the configured console handler by its own text one. The ops
    channel calls this once while the server starts, so that the JSON lines
    win. (``rasa run actions`` applies the file last and needs nothing.)
    """
    path = configured_file_from_argv(argv)
    if not path or not Path(path).exists():
        return False
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        return False
    level = logging.getLogger("rasa").level
    logging.config.dictConfig(config)
    if level:  # keep Rasa's own level (LOG_LEVEL, -v, --quiet)
        logging.getLogger("rasa").setLevel(level)
    return True
