"""`core.redaction`: personal data out of text, everything else left alone."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.redaction import find_personal_data, iban_valid, luhn_valid, redact


@pytest.mark.parametrize(
    "text, expected",
    [
        # cards: grouped or not, any scheme length, Luhn-checked
        ("My card 4111 1111 1111 1111 was charged twice", "My card [CARD] was charged twice"),
        ("card 4111-1111-1111-1111 used 12 times", "card [CARD] used 12 times"),
        ("Amex 3782 822463 10005 please", "Amex [CARD] please"),
        ("5555555555554444", "[CARD]"),
        # e-mail addresses, also spelt out
        ("email me at john.doe+bank@example.co.uk please", "email me at [EMAIL] please"),
        ("write to jane [at] example [dot] com", "write to [EMAIL]"),
        # IBANs with and without spaces, any case
        ("my IBAN is GB82 WEST 1234 5698 7654 32 thanks", "my IBAN is [IBAN] thanks"),
        ("DE89370400440532013000", "[IBAN]"),
        ("iban gb82west12345698765432", "iban [IBAN]"),
        # phone numbers: international, national, North American
        ("call +44 7700 900123 or 07700 900123", "call [PHONE] or [PHONE]"),
        ("office (020) 7946 0018", "office [PHONE]"),
        ("US 555-123-4567 or +1 (555) 123 4567", "US [PHONE] or [PHONE]"),
        # account numbers and sort codes, named or just long
        ("account number 12345678, sort code 12-34-56", "account number [ACCOUNT], sort code [ACCOUNT]"),
        ("acct # 987654", "acct # [ACCOUNT]"),
        ("my customer number is 00123456", "my customer number is [ACCOUNT]"),
        ("payment reference 9876543210 failed", "payment reference [ACCOUNT] failed"),
        ("a 16-digit number that fails Luhn 4111111111111112", "a 16-digit number that fails Luhn [ACCOUNT]"),
        # secrets customers sometimes type
        ("my pin is 4321", "my pin is [PIN]"),
        ("CVV: 123", "CVV: [PIN]"),
    ],
)
def test_personal_data_is_replaced_by_its_kind(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I have 3 cards and 2 accounts, opened in 2019",
        "I sent $25000000 and 20000000 euros on 2023-01-05",
        "transfer of 1,500.00 GBP on 12/03/2023 at 14:30",
        "order 123456 was late",
        "the limit is £5,000 a day and £500 in cash",
        "Our SWIFT code is NWBKGB2L",
        "Forward the text to 7726",
        "It takes 5 to 10 working days",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_redaction_is_idempotent_and_reports_what_it_found():
    text = "Card 4111 1111 1111 1111, mail a@b.io, phone 07700 900123, IBAN DE89370400440532013000"
    once = redact(text)

    assert redact(once) == once
    assert [p.kind for p in find_personal_data(text)] == ["CARD", "EMAIL", "PHONE", "IBAN"]
    assert find_personal_data(text)[0].text == "4111 1111 1111 1111"


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


def _luhn_complete(prefix: str) -> str:
    for last in "0123456789":
        if luhn_valid(prefix + last):
            return prefix + last
    raise AssertionError("unreachable")


@settings(max_examples=200, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=12, max_size=18).filter(lambda d: d[0] != "0"),
    separator=st.sampled_from(["", " ", "-"]),
    before=st.sampled_from(["", "my card is ", "card: ", "paid with "]),
    after=st.sampled_from(["", " thanks", ", is it blocked?", "."]),
)
def test_any_valid_card_number_never_survives(digits, separator, before, after):
    card = _luhn_complete(digits)
    written = separator.join(card[i:i + 4] for i in range(0, len(card), 4))

    redacted = redact(before + written + after)

    assert not any(ch.isdigit() for ch in redacted), redacted
    assert redacted.startswith(before) and redacted.endswith(after)
