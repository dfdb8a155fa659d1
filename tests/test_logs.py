"""`core.logs`: JSON lines with the conversation id, personal data and credentials scrubbed."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config

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

    record = logging.LogRecord("bot.channels.desk", logging.INFO, __file__, 1, "conversation %s", ("fuzz-\u2028\x85\x1c-é",), None)
    line = JsonFormatter().format(record)
    assert line.splitlines() == [line]
    assert json.loads(line)["message"] == "conversation fuzz-\u2028\x85\x1c-é"
