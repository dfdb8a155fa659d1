"""The one test of "is this a button payload?" (core.payloads), shared by every part."""
from core.payloads import is_payload, parse_payload


def test_payloads_are_intent_with_optional_json():
    assert is_payload("/greet")
    assert is_payload('/rate_answer{"answer_id": "a1", "rating": "up"}')
    assert is_payload('  /select_suggestion{"item_id": "x"}  ')
    assert parse_payload('/rate_answer{"rating": "up"}') == ("rate_answer", {"rating": "up"})
    assert parse_payload("/greet") == ("greet", {})


def test_broken_json_inside_braces_keeps_the_intent():
    assert parse_payload('/inform{"x": ') is None  # an unclosed brace is typed text
    assert parse_payload("/inform{not json}") == ("inform", {})
    assert parse_payload("/inform[1]") == ("inform[1]", {})


def test_typed_text_is_not_a_payload():
    for text in ["", None, "hello", "what is /greet", "/ hello", "/hello world", "   ", "/"]:
        assert not is_payload(text), text
        assert parse_payload(text) is None, text


def test_the_channels_and_redaction_use_the_same_test():
    from bot.channels import replies
    from core import redaction

    assert replies.is_payload is is_payload and replies.parse_payload is parse_payload
    assert redaction.redact_message('/rate_answer{"rating": "up"}') == '/rate_answer{"rating": "up"}'
