"""`core.logs`: JSON lines (structlog's ProcessorFormatter) with the conversation id, personal data and credentials scrubbed."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import logging.config

import structlog
import yaml

from core import logs, metrics


def capture(service: str = "rasa"):
    stream = io.StringIO()
    handler = logs.JsonHandler(service, stream=stream)
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def lines(stream: io.StringIO):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_the_conversation_id():
    logger, stream = capture()
    with logs.conversation("c-001"):
        logger.info("answered %s", "card_arrival", extra={"stage": "nlu"})
    logger.warning("outside any conversation")
    first, second = lines(stream)
    assert first["message"] == "answered card_arrival"
    assert (first["level"], first["service"], first["conversation_id"], first["stage"]) == ("INFO", "rasa", "c-001", "nlu")
    assert first["ts"].endswith("Z") and first["logger"].startswith("test.logs")
    assert second["conversation_id"] is None


def test_personal_data_and_credentials_never_reach_the_log():
    logger, stream = capture()
    logger.info("card 4111 1111 1111 1111, mail jo@example.com, phone +44 7700 900123")
    logger.info("GET /conversations/x/tracker?token=s3cr3t-value&x=1")
    logger.info("headers: Authorization: Bearer abc.def.ghi")
    logger.info("settings", extra={"detail": {"iban": "GB82 WEST 1234 5698 7654 32", "password": "password=hunter2"}})
    try:
        raise ValueError("customer jo@example.com broke it")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    for secret in ("4111 1111 1111 1111", "jo@example.com", "7700 900123", "s3cr3t-value", "abc.def.ghi",
                   "GB82 WEST", "hunter2"):
        assert secret not in text
    entries = lines(stream)
    assert entries[0]["message"] == "card [CARD], mail [EMAIL], phone [PHONE]"
    assert entries[1]["message"] == "GET /conversations/x/tracker?token=[SECRET]&x=1"
    assert "ValueError: customer [EMAIL] broke it" in entries[-1]["exception"]


def test_a_structured_rasa_record_becomes_fields():
    logger, stream = capture()
    logger.info(json.dumps({"event": "processor.message.parse", "level": "debug", "parse_data_text": "call 07700 900123"}))
    (entry,) = lines(stream)
    assert entry["message"] == "processor.message.parse"
    assert entry["fields"] == {"parse_data_text": "call [PHONE]"}


def test_concurrent_conversations_keep_their_own_ids():
    logger, stream = capture()

    async def handle(cid: str) -> None:
        with logs.conversation(cid):
            await asyncio.sleep(0.01)
            logger.info("handled")

    async def main() -> None:
        await asyncio.gather(*(handle(f"c-{i}") for i in range(5)))

    asyncio.run(main())
    assert sorted(e["conversation_id"] for e in lines(stream)) == [f"c-{i}" for i in range(5)]


def test_the_filter_adds_the_id_without_dropping_anything():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with logs.conversation("c-9"):
        assert logs.ConversationFilter().filter(record) is True
    assert record.conversation_id == "c-9"


def test_the_config_file_is_valid_for_dictconfig_and_found_on_the_command_line(tmp_path):
    path = logs.write_logging_config(tmp_path, "actions")
    config = yaml.safe_load(path.read_text())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(config)  # Rasa swallows a bad file with a debug line: check it here
        assert any(isinstance(h, logs.JsonHandler) for h in root.handlers)
        assert any(isinstance(h, metrics.ErrorCountHandler) for h in root.handlers)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    argv = ["rasa", "run", "--port", "5005", "--logging-config-file", str(path)]
    assert logs.configured_file_from_argv(argv) == str(path)
    assert logs.configured_file_from_argv([f"--logging-config-file={path}"]) == str(path)
    assert logs.configured_file_from_argv(["rasa", "run"]) is None


def test_logged_errors_are_counted_by_logger():
    before = metrics.LOG_ERRORS.labels("bot.channels")._value.get()
    handler = metrics.ErrorCountHandler()
    logger = logging.getLogger("bot.channels.somewhere")
    logger.addHandler(handler)
    try:
        logger.error("delivery failed")
        logger.warning("only a warning")
    finally:
        logger.removeHandler(handler)
    assert metrics.LOG_ERRORS.labels("bot.channels")._value.get() == before + 1


def test_an_entry_stays_one_line_whatever_the_customer_typed():
    import json
    import logging

    from core.logs import JsonFormatter

    record = logging.LogRecord("bot.handoff.desk", logging.INFO, __file__, 1, "conversation %s", ("fuzz-\u2028\x85\x1c-é",), None)
    line = JsonFormatter().format(record)
    assert line.splitlines() == [line]
    assert json.loads(line)["message"] == "conversation fuzz-\u2028\x85\x1c-é"


# ------------------------------------------------------------------ structlog (Rasa's own events)
@contextlib.contextmanager
def structlog_config():
    """Restore structlog's global configuration after the test."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def structlog_capture(service: str = "rasa"):
    """A structlog logger whose events reach a `JsonHandler` through the standard library."""
    stdlib_logger, stream = capture(service)
    return structlog.get_logger(stdlib_logger.name), stream


def test_the_formatter_is_structlogs_processor_formatter():
    assert isinstance(logs.JsonFormatter(), structlog.stdlib.ProcessorFormatter)
    config = logs.logging_config("rasa")
    assert config["handlers"]["json"]["()"] == "core.logs.json_handler"


def test_a_structlog_event_goes_through_the_same_chain():
    with structlog_config():
        structlog.reset_defaults()  # as in a process where nothing configured structlog
        logs.route_structlog()
        logger, stream = structlog_capture()
        with logs.conversation("c-42"):
            logger.info("processor.message.parse", parse_data_text="call 07700 900123", event_info="parsed")
    (entry,) = lines(stream)
    assert (entry["message"], entry["level"], entry["service"], entry["conversation_id"]) == (
        "processor.message.parse", "INFO", "rasa", "c-42")
    assert entry["logger"].startswith("test.logs") and entry["ts"].endswith("Z")
    assert entry["fields"] == {"parse_data_text": "call [PHONE]", "event_info": "parsed"}


def test_rasas_structlog_chain_is_kept_and_only_its_renderer_replaced():
    from rasa.utils import log_utils

    with structlog_config():
        log_utils.configure_structlog(logging.INFO)  # what `rasa run` does before the server starts
        logs.route_structlog()
        processors = structlog.get_config()["processors"]
        assert processors[-1] is structlog.stdlib.ProcessorFormatter.wrap_for_formatter
        assert log_utils._anonymizer in processors
        logger, stream = structlog_capture()
        try:
            raise ValueError("customer jo@example.com broke it")
        except ValueError:
            logger.exception("action.run.failed", user_text="my iban is GB82 WEST 1234 5698 7654 32")
    (entry,) = lines(stream)
    assert (entry["message"], entry["level"]) == ("action.run.failed", "ERROR")
    assert entry["fields"] == {"user_text": "my iban is [IBAN]"}
    assert "ValueError: customer [EMAIL] broke it" in entry["exception"]
    assert "jo@example.com" not in stream.getvalue()


def test_routing_twice_changes_nothing():
    with structlog_config():
        structlog.reset_defaults()
        logs.route_structlog()
        first = structlog.get_config()["processors"]
        logs.route_structlog()
        assert structlog.get_config()["processors"] == first


def test_a_bad_format_string_keeps_the_line():
    logger, stream = capture()
    logger.info("%d customers", "many")
    (entry,) = lines(stream)
    assert entry["message"] == "'%d customers' ('many',)"


def test_extra_fields_and_stack_are_written_scrubbed():
    logger, stream = capture()
    logger.warning("refused", extra={"caller": "rest", "detail": ["mail jo@example.com"]}, stack_info=True)
    (entry,) = lines(stream)
    assert (entry["caller"], entry["detail"]) == ("rest", ["mail [EMAIL]"])
    assert "test_extra_fields_and_stack_are_written_scrubbed" in entry["stack"]
    assert list(entry)[:6] == ["ts", "level", "service", "logger", "message", "conversation_id"]


def test_a_json_handler_from_the_config_routes_structlog():
    with structlog_config():
        structlog.reset_defaults()
        handler = logs.json_handler("actions")
        assert isinstance(handler, logs.JsonHandler)
        assert structlog.get_config()["processors"][-1] is structlog.stdlib.ProcessorFormatter.wrap_for_formatter
