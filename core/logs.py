"""Structured logs: one JSON object a line, with the conversation id, personal data redacted.

Both servers get the same configuration (`logging_config`), written to a
YAML file and passed with Rasa's ``--logging-config-file`` (see
`bot/serve.py`). Every record becomes::

    {"ts": "2026-11-23T15:37:34.123Z", "level": "INFO", "service": "rasa",
     "logger": "bot.handoff.desk", "message": "...", "conversation_id": "c-001"}

plus the fields passed with ``extra=``, ``exception`` (the traceback) when
there is one, and ``fields`` for a structured (structlog) event from Rasa.
``conversation_id`` comes from a context variable that the handoff desk sets
for each customer message (and the action server for each action call), so
every line logged while that message is handled carries it, whichever module
logs it.

The lines are written by structlog: `JsonFormatter` is a
`structlog.stdlib.ProcessorFormatter` whose processor chain adds the time,
level, service, logger name and conversation id, renders the exception,
redacts, and ends in structlog's `JSONRenderer`. Rasa logs through structlog
as well as the standard library; `route_structlog` (run when the logging
configuration is applied) makes structlog hand its event dicts to the
standard library's handlers, so both kinds of record pass the same chain. An
event that Rasa's own structlog set-up rendered to a JSON string before that
(a logger first used earlier) is parsed back into ``fields``.

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

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict

from core.redaction import redact

CONVERSATION_ID: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("conversation_id", default=None)

_CREDENTIAL = re.compile(
    r"(?i)((?:auth[_-]?token|api[_-]?key|access[_-]?token|token|password|passwd|secret|signing[_-]?secret)"
    r"[\"']?\s*[=:]\s*[\"']?|authorization:\s*(?:bearer|basic)\s+|\bbearer\s+)([^\s&\"',;]+)"
)
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


# ------------------------------------------------------------------ the processor chain
# Each processor takes (logger, method name, event dict) and returns the event dict. The
# ProcessorFormatter puts the LogRecord under "_record" and whether it came from structlog
# under "_from_structlog".

# Keys of a line that are not a structured event's own fields.
_TOP = ("ts", "level", "service", "logger", "message", "conversation_id")
_NOT_FIELDS = {"event", "level", "exc_info", "stack_info", "exception", "stack", "conversation_id", "fields", "timestamp"}


def _structured_event(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """A structlog event's own keys go under ``fields`` (also when it arrives rendered as a JSON string)."""
    if event_dict.get("_from_structlog"):
        fields = {key: event_dict.pop(key) for key in list(event_dict)
                  if key not in _NOT_FIELDS and not key.startswith("_")}
    else:
        message = event_dict.get("event")
        if not (isinstance(message, str) and message.startswith("{") and message.endswith("}")):
            return event_dict
        try:
            fields = json.loads(message)
        except ValueError:
            return event_dict
        if not isinstance(fields, dict):
            return event_dict
        event_dict["event"] = str(fields.pop("event", ""))
    fields.pop("level", None)
    event_dict.pop("level", None)  # structlog's lower-case method name; the record's level is written
    if fields:
        event_dict["fields"] = fields
    return event_dict


def _record_level(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = event_dict["_record"].levelname
    return event_dict


def _record_time(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """When the record was made, UTC, to the millisecond: ``2026-11-23T15:37:34.123Z``."""
    created = dt.datetime.fromtimestamp(event_dict["_record"].created, dt.timezone.utc)
    event_dict["ts"] = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event_dict


def _conversation_id(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    event_dict["conversation_id"] = (event_dict.get("conversation_id")
                                     or getattr(event_dict["_record"], "conversation_id", None)
                                     or CONVERSATION_ID.get())
    return event_dict


def _record_traces(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's stack (``stack_info=True``) and an exception already rendered to text."""
    stack = event_dict.pop("stack_info", None)
    if isinstance(stack, str):
        event_dict["stack"] = stack
    record = event_dict["_record"]
    if "exception" not in event_dict and not event_dict.get("exc_info") and record.exc_text:
        event_dict["exception"] = record.exc_text
    return event_dict


def _line_order(service: str):
    def in_order(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
        """The keys of `_TOP` first (``event`` becomes ``message``), then the rest; no private keys."""
        event_dict["message"] = event_dict.pop("event", "")
        event_dict["service"] = service
        event_dict.pop("asctime", None)
        line = {key: event_dict.get(key) for key in _TOP}
        line.update((key, value) for key, value in event_dict.items() if key not in line and not key.startswith("_"))
        return line

    return in_order


def redact_event(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """Personal data and credentials out of every value, however deep (the redaction processor)."""
    return _scrubbed(event_dict)


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


class JsonFormatter(ProcessorFormatter):
    """One JSON object a line, personal data and credentials scrubbed (structlog's processor chain)."""

    def __init__(self, service: str = "assistant", **kwargs: Any) -> None:
        self.service = service
        super().__init__(
            # Records of the standard library (not from structlog): their extra= fields.
            foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
            processors=[
                _structured_event,
                _record_time,
                _record_level,
                structlog.stdlib.add_logger_name,
                _conversation_id,
                _record_traces,
                structlog.processors.format_exc_info,  # exc_info -> "exception", the traceback's text
                _line_order(service),
                redact_event,
                # ASCII only: a customer's text may hold U+2028, U+0085 or other characters that
                # log shippers (and str.splitlines) take for line ends, which would split an entry.
                structlog.processors.JSONRenderer(ensure_ascii=True, default=str),
            ],
        )

    def format(self, record: logging.LogRecord) -> str:
        if record.args and not hasattr(record, "_logger"):
            try:
                record.getMessage()
            except Exception:  # a bad format string must not lose the line
                record = logging.makeLogRecord({**vars(record), "msg": f"{record.msg!r} {record.args!r}", "args": ()})
        return super().format(record)


class JsonHandler(logging.StreamHandler):
    """Writes JSON lines to standard output (`JsonFormatter` and `ConversationFilter` built in)."""

    def __init__(self, service: str = "assistant", stream: Any = None) -> None:
        super().__init__(stream or sys.stdout)
        self.setFormatter(JsonFormatter(service))
        self.addFilter(ConversationFilter())


def route_structlog() -> None:
    """Make structlog hand its event dicts to the standard library's handlers (`JsonFormatter` renders them).

    When Rasa configured structlog (``rasa`` CLI: its anonymizer, level filter,
    Sentry processor, ... then a JSON or console renderer), its chain is kept and
    only the renderer is replaced; otherwise structlog is set up to log through
    the standard library. Loggers first used before this keep rendering JSON
    strings, which `JsonFormatter` parses back.
    """
    config = structlog.get_config()
    processors = list(config["processors"])
    if processors and processors[-1] is ProcessorFormatter.wrap_for_formatter:
        return
    if isinstance(config["logger_factory"], structlog.stdlib.LoggerFactory) and processors:
        kept = [p for p in processors[:-1] if p is not structlog.processors.dict_tracebacks]
        structlog.configure(processors=kept + [ProcessorFormatter.wrap_for_formatter])
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            ProcessorFormatter.wrap_for_formatter,
        ],
        context_class=dict,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def json_handler(service: str = "assistant") -> JsonHandler:
    """The logging configuration's handler factory: routes structlog (`route_structlog`), then the handler."""
    route_structlog()
    return JsonHandler(service)


def logging_config(service: str, level: str = "INFO") -> Dict[str, Any]:
    """The `logging.config.dictConfig` configuration of one server (``rasa`` or ``actions``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "json": {"()": "core.logs.json_handler", "service": service},
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
            # Alembic's start-up chatter (plugins set up); its "Running upgrade ..." lines stay.
            "alembic.runtime.plugins": {"level": "WARNING"},
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
