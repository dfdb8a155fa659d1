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
        ("account number 12345678, sort code 12-34-56", "account number [ACCOUNT], sort code [SORT_CODE]"),
        ("acct # 987654", "acct # [ACCOUNT]"),
        ("my customer number is 00123456", "my customer number is [ACCOUNT]"),
        ("Account #: 112233445", "Account #: [ACCOUNT]"),
        ("transfer from 23456789 to 87654321", "transfer from [ACCOUNT] to [ACCOUNT]"),
        # sort codes without the words "sort code", and after them in any spacing
        ("pay it to 40-47-84 71234567 please", "pay it to [SORT_CODE] [ACCOUNT] please"),
        ("my details: 20-32-06 / 43218765", "my details: [SORT_CODE] / [ACCOUNT]"),
        ("sortcode: 60 16 13", "sortcode: [SORT_CODE]"),
        # a mistyped card is still a card when it is written like one
        ("card 4532 0151 1283 0369 doesn't work", "card [CARD] doesn't work"),
        ("a 16-digit number that fails Luhn 4111111111111112", "a 16-digit number that fails Luhn [CARD]"),
        # secrets customers sometimes type
        ("my pin is 4321", "my pin is [PIN]"),
        ("CVV: 123", "CVV: [PIN]"),
        ("the security code on the back is 987", "the security code on the back is [PIN]"),
        # names: cue phrases, greetings, signatures, family words
        ("My name is John Smith and I need help", "My name is [NAME] and I need help"),
        ("my name is mary o'neil", "my name is [NAME]"),
        ("Hi, this is Tom Baker from accounts", "Hi, this is [NAME] from accounts"),
        ("I'm Priya, my card is blocked", "I'm [NAME], my card is blocked"),
        ("Hi Sarah, thanks for waiting.", "Hi [NAME], thanks for waiting."),
        ("Please fix it. Thanks, James O'Brien", "Please fix it. Thanks, [NAME]"),
        ("Kind regards,\nHelen Pemberton", "Kind regards,\n[NAME]"),
        ("Dear Mr Okonkwo, your account is open.", "Dear Mr [NAME], your account is open."),
        ("name on the card is Anna van der Berg", "name on the card is [NAME]"),
        ("my wife Fatima has a joint account", "my wife [NAME] has a joint account"),
        # addresses and postcodes: UK, US, EU
        ("send it to 14 Acacia Avenue, Reading RG1 2AB.", "send it to [ADDRESS]."),
        ("new address: Flat 3, 27 Cromwell Road, London SW7 2HR", "new address: [ADDRESS]"),
        ("I live at 742 Evergreen Terrace, Springfield, IL 62704 now", "I live at [ADDRESS] now"),
        ("Friedrichstraße 43, 10117 Berlin", "[ADDRESS]"),
        ("Prinsengracht 263, 1016 GV Amsterdam", "[ADDRESS]"),
        ("12 rue de Rivoli, 75004 Paris", "[ADDRESS]"),
        ("Via Roma 10, 00184 Roma", "[ADDRESS]"),
        ("postcode sw1a 1aa", "postcode [ADDRESS]"),
        ("zip code 94107", "zip code [ADDRESS]"),
        # dates of birth: only with birth context
        ("my date of birth is 12/03/1985", "my date of birth is [DOB]"),
        ("DOB: 3 March 1985", "DOB: [DOB]"),
        ("I was born on March 3, 1985", "I was born on [DOB]"),
        # passports and national ids
        ("my passport number is 502135326", "my passport number is [PASSPORT]"),
        ("NI number AB 12 34 56 C", "NI number [NATIONAL_ID]"),
        ("my NI number is QQ123456C", "my NI number is [NATIONAL_ID]"),
        ("SSN 123-45-6789", "SSN [NATIONAL_ID]"),
        ("social security number 123456789", "social security number [NATIONAL_ID]"),
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
        "order 55782134 and invoice 20240315001",
        "My order number is 410914823583 and it still hasn't arrived",
        "payment reference 9876543210 failed",
        "tracking 1Z999AA10123456784",
        "Transaction ID: 4829301234 on 2024-03-15 at 14:05",
        "card ending 4821 declined at 14:05 on 03/04/2024",
        "the last 4 digits are 1234",
        "I paid £1,250.00 on 15/03/2024, ref 88234411",
        "the payment on 12-03-24 was wrong",
        "I was charged 3 times £4.99 on Netflix",
        "Version 12.3.4 crashes, error 40417",
        "This is ridiculous, I want my money back",
        "I'm Fed up with this",
        "Hi there, my card doesn't work",
        "Thanks again for the help",
        "I'm in London until Monday",
        "I have 2 cards and 1 account since 2019",
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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我的卡号是4539148803436467请冻结", "我的卡号是[CARD]请冻结"),
        ("电话13812345678", "电话[PHONE]"),
        ("邮箱zhang.san@example.com谢谢", "邮箱[EMAIL]谢谢"),
        ("我叫李明，卡丢了", "我叫[NAME]，卡丢了"),
        ("我是王小红，请帮我查一下", "我是[NAME]，请帮我查一下"),
        ("我的地址是上海市徐汇区漕溪北路88号", "我的地址是[ADDRESS]"),
        ("身份证11010519491231002X", "身份证[NATIONAL_ID]"),
        ("我的生日是1990年5月6日", "我的生日是[DOB]"),
        ("IBAN是DE89370400440532013000请退款", "IBAN是[IBAN]请退款"),
        ("验证码482913", "验证码[PIN]"),
        ("我叫John Smith，卡号4539148803436467", "我叫[NAME]，卡号[CARD]"),
    ],
)
def test_personal_data_written_against_chinese_characters_is_found(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    ["订单号20240315123456还没到", "尾号1234的卡被拒了", "我3月15日转账500元还没到账", "快递单号1Z999AA10123456784", "我是新客户，怎么开户"],
)
def test_chinese_text_without_personal_data_is_left_alone(text):
    assert redact(text) == text


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


_CJK_TEXT = st.text(alphabet="我的卡号是请冻结电话邮箱谢谢转账还没到帐户", min_size=0, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=12, max_size=18).filter(lambda d: d[0] not in "0"),
    before=_CJK_TEXT,
    after=_CJK_TEXT,
)
def test_a_card_written_against_chinese_characters_never_survives(digits, before, after):
    card = _luhn_complete(digits)
    redacted = redact(before + card + after)
    assert card not in redacted and redacted == before + "[CARD]" + after, redacted


@settings(max_examples=150, deadline=None)
@given(
    number=st.text(alphabet="0123456789", min_size=6, max_size=14),
    cue=st.sampled_from(["order ", "Order #", "tracking number ", "invoice ", "transaction ID ", "ref ", "case ", "订单号", "交易编号"]),
    after=st.sampled_from(["", " was late", " hasn't arrived", "还没到", ", any update?"]),
)
def test_order_and_reference_numbers_stay_readable(number, cue, after):
    text = cue + number + after
    assert redact(text) == text


def test_a_compact_date_and_time_is_no_card_even_when_it_passes_luhn():
    # Rasa names its models YYYYMMDD-HHMMSS-words; 20261202-122937 passes the Luhn check.
    from core.redaction import luhn_valid

    assert luhn_valid("20261202122937")
    line = "Loading model /tmp/fresh/models/20261202-122937-mature-sniffer.tar.gz"
    assert redact(line) == line
    assert redact("card 4539 1488 0343 6467 was stolen") == "card [CARD] was stolen"


@pytest.mark.parametrize("text, kind", [
    ("电话１３８１２３４５６７８", "PHONE"),
    ("call me on ０７７００ ９００１２３", "PHONE"),
    ("card ４２４２４２４２４２４２４２４２ please", "CARD"),
    ("我的邮箱是ｂｏ＠ｅｘａｍｐｌｅ．ｃｏｍ", "EMAIL"),
])
def test_full_width_characters_are_read_as_ascii_and_redacted(text, kind):
    """What Chinese and Japanese keyboards type; the value keeps the characters written."""
    [item] = find_personal_data(text)
    assert item.kind == kind and item.text == text[item.start:item.end]
    assert f"[{kind}]" in redact(text)
