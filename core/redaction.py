"""Personal data out of text before it is embedded, stored or shown to staff.

`redact(text)` replaces each piece of personal data by a placeholder naming its
kind; `find_personal_data(text)` returns where each piece is, for reports
and measurement. For the handoff desk: `redact_message` (a customer's
message, button-payload-shaped text included), `redact_metadata` (message
metadata but the channels' own keys), `redact_agent_reply` (an agent's
message, keeping the agent's own name); `redact_value` redacts every string
in a JSON-like value. Measured by `python -m training.bench_redaction`
(docs/benchmarks.md). Kinds, in the order they are looked for (an earlier
kind wins where two overlap):

- ``[EMAIL]``       e-mail addresses, also "name [at] host [dot] com";
- ``[IBAN]``        IBANs with or without spaces, mod-97 checked (a known
                    country's exact length with a bad check counts too: a
                    mistyped IBAN is still someone's account);
- ``[NATIONAL_ID]`` UK National Insurance numbers (allowed prefixes), US SSNs
                    (dashed anywhere; plain only after "SSN"/"social security"),
                    Chinese resident ids (18 digits with their check digit);
- ``[CARD]``        13 to 19 digits, grouped or not, that pass the Luhn check
                    (not when the number is named as an order, tracking,
                    transaction or reference number and written in one piece);
- ``[SORT_CODE]``   UK sort codes after "sort code"/"s/c", and any NN-NN-NN
                    that is not a date named as one ("on 12-03-24");
- ``[ACCOUNT]``     6 to 17 digits named as an account, customer or member
                    number (also 账号/账户), or right after a sort code;
- ``[PASSPORT]``    the first id-shaped token after "passport"/护照;
- ``[DOB]``         a date with birth context ("born", "DOB", "date of birth",
                    "birthday", 出生, 生日) right before or after it;
- ``[PHONE]``       numbers `phonenumbers` finds valid (international, or
                    national for GB, US, CN, DE, FR, IE, NL, IT, ES), or
                    phone-shaped and possible after "call"/"phone"/电话...;
- ``[ADDRESS]``     street addresses (UK, US, German/Dutch street words,
                    French, Spanish, Italian, Portuguese, Chinese; PO boxes;
                    after "address is", capitalised words and a number) with
                    the town and postcode that follow, UK postcodes anywhere,
                    ZIP / postal codes after "zip", "postcode", 邮编;
- ``[NAME]``        names after cue phrases ("my name is", "this is", "I'm",
                    "Mr", "name:", "account holder", 我叫/我是/姓名), in
                    greetings ("Hi Sarah,"), sign-offs ("Thanks, John Smith",
                    a name alone on the last line) and after family words
                    ("my wife Anna"): a first-name lexicon plus capitalised
                    words that are not ordinary English words;
- ``[PIN]``         3 to 8 digits right after PIN, CVV/CVC, security code,
                    passcode, one-time code, OTP, 密码, 验证码.

Not personal data, kept readable: amounts, dates and times (other than a
date of birth), order / tracking / transaction / reference numbers, a
card's last four digits, numbers in general. Every pattern is bounded by
``[A-Za-z0-9]`` look-arounds rather than ``\\w`` or ``\\b``, so data written
straight against Chinese characters (我的卡号是4539148803436467请冻结) is found.
Placeholders never match a detector, so redacting twice changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import phonenumbers

from core.payloads import PAYLOAD
from core.records import read_jsonl

EMAIL, IBAN, CARD, PHONE, ACCOUNT, PIN = "EMAIL", "IBAN", "CARD", "PHONE", "ACCOUNT", "PIN"
SORT_CODE, NAME, ADDRESS, DOB, PASSPORT, NATIONAL_ID = "SORT_CODE", "NAME", "ADDRESS", "DOB", "PASSPORT", "NATIONAL_ID"
KINDS = (CARD, IBAN, ACCOUNT, SORT_CODE, EMAIL, PHONE, NAME, ADDRESS, DOB, PASSPORT, NATIONAL_ID, PIN)

Span = Tuple[int, int]


@dataclass(frozen=True)
class PersonalData:
    """One piece of personal data found in a text: its kind and where it is."""

    kind: str
    start: int
    end: int
    text: str


# Look-arounds that treat anything but ASCII letters and digits as a separator
# (Python's \w and \b count Chinese characters as word characters).
_NB = r"(?<![A-Za-z0-9])"
_NA = r"(?![A-Za-z0-9])"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

# --- checks -----------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check used by payment cards."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# IBAN lengths by country (ISO 13616 registry, the countries a European retail
# bank meets most); other countries are accepted when the mod-97 check passes.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "VA": 22,
}


def iban_valid(candidate: str) -> bool:
    """True when `candidate` (spaces allowed) passes the IBAN mod-97 check."""
    compact = re.sub(r"\s", "", candidate).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _looks_like_iban(candidate: str) -> bool:
    compact = re.sub(r"\s", "", candidate).upper()
    if iban_valid(compact):
        return True
    return IBAN_LENGTHS.get(compact[:2]) == len(compact) and bool(re.search(r"\d{6}", compact[4:]))


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _cn_ric_valid(number: str) -> bool:
    """Chinese resident identity number: 17 digits, a plausible birth date, ISO 7064 check character."""
    if not re.fullmatch(r"\d{17}[\dXx]", number):
        return False
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * w for c, w in zip(number, weights)) % 11] == number[17].upper()


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# --- context -----------------------------------------------------------------

# A number named as something that is not a person's: kept readable.
_NOT_PERSONAL_BEFORE = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:order|tracking|parcel|shipment|consignment|invoice|case|ticket|booking|confirmation|"
    r"transaction|txn|reference|ref|refund|receipt|claim|dispute|complaint)"
    r"(?:\s+(?:number|no|num|nr|id|code|ref))?\.?\s*(?:is|was|:|#|=|-)?\s*(?:#\s*)?"
    r"|(?:订单|单号|订单号|交易编号|交易号|流水号|快递单号|参考号)\s*[:：是为]?\s*)$"
)


def _token_start(text: str, index: int) -> int:
    """Where the run of ASCII letters, digits and #-/ that ends at `index` starts."""
    while index > 0 and (text[index - 1].isascii() and (text[index - 1].isalnum() or text[index - 1] in "#-/")):
        index -= 1
    return index


def _named_not_personal(text: str, start: int) -> bool:
    begin = _token_start(text, start)
    return bool(_NOT_PERSONAL_BEFORE.search(text[max(0, begin - 40):begin]))


# --- detectors ----------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+'-])[A-Za-z0-9][A-Za-z0-9._%+'-]*"
    r"(?:@|\s*[\[(]\s*at\s*[\])]\s*)"
    r"[A-Za-z0-9-]+(?:(?:\.|\s*[\[(]\s*dot\s*[\])]\s*)[A-Za-z0-9-]+)*"
    r"(?:\.|\s*[\[(]\s*dot\s*[\])]\s*)[A-Za-z]{2,24}" + _NA,
    re.IGNORECASE,
)


_EMAIL_SPELT = re.compile(
    r"(?i)(?<![A-Za-z0-9._-])[A-Za-z0-9][A-Za-z0-9._-]*\s+at\s+[A-Za-z0-9-]+(?:\s+dot\s+[A-Za-z0-9-]+)*\s+dot\s+"
    r"(?:com|net|org|co\s+dot\s+uk|co\s+dot\s+[a-z]{2}|uk|de|fr|ie|es|it|nl|cn|io|info|edu|gov)" + _NA
)


def _emails(text: str) -> Iterator[Span]:
    if "@" in text or "[" in text or "(" in text:
        for match in _EMAIL.finditer(text):
            yield match.span()
    if " dot " in text.lower():
        for match in _EMAIL_SPELT.finditer(text):
            yield match.span()


_IBAN = re.compile(_NB + r"[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}" + _NA)


def _ibans(text: str) -> Iterator[Span]:
    for match in _IBAN.finditer(text):
        candidate = match.group(0)
        # The regex may run into the next words ("NL91ABNA0417164300 is my"): trim to the
        # longest prefix that ends where a word ends and is an IBAN. A country with a known
        # length must have exactly that length, so that words never complete one by chance.
        length = IBAN_LENGTHS.get(candidate[:2].upper())
        for end in range(len(candidate), 14, -1):
            if candidate[end - 1] == " " or (end < len(candidate) and candidate[end] != " "):
                continue
            compact = re.sub(r"\s", "", candidate[:end]).upper()
            if (length is not None and len(compact) != length) or not _looks_like_iban(compact):
                continue
            yield match.start(), match.start() + end
            break


_NINO = re.compile(
    _NB + r"([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?(\d{2})\s?(\d{2})\s?(\d{2})\s?([A-D])" + _NA, re.IGNORECASE
)
# With the words "NI number" / "national insurance" in front, any two letters (QQ is HMRC's example prefix).
_NINO_NAMED = re.compile(
    r"(?i)(?<![A-Za-z])(?:ni|nino|national\s+insurance)(?:\s+(?:number|no|num))?\.?(?:\s*(?:is|:|=|-))*\s*"
    r"([A-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]?)" + _NA
)
_SSN_DASHED = re.compile(r"(?<![0-9-])(\d{3})-(\d{2})-(\d{4})(?![0-9]|-\d)")
_SSN_NAMED = re.compile(
    r"(?i)(?<![A-Za-z])(?:ssn|social\s+security(?:\s+(?:number|no))?|social|ss\s*#|ss\s+(?:number|no))\.?\s*(?:is|:|#|=|-)?\s*"
    r"(\d{3})[ -]?(\d{2})[ -]?(\d{4})(?![0-9])"
)
_CN_ID = re.compile(r"(?<![0-9])\d{17}[\dXx](?![0-9A-Za-z])")


def _national_ids(text: str) -> Iterator[Span]:
    for match in _NINO.finditer(text):
        if match.group(1).upper() not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            yield match.span()
    for match in _NINO_NAMED.finditer(text):
        yield match.span(1)
    for match in _SSN_DASHED.finditer(text):
        if _ssn_valid(*match.groups()):
            yield match.span()
    for match in _SSN_NAMED.finditer(text):
        if _ssn_valid(*match.groups()):
            yield match.start(1), match.end(3)
    for match in _CN_ID.finditer(text):
        if _cn_ric_valid(match.group(0)):
            yield match.span()


# Digits in groups separated by single spaces or dashes (cards are written 4-4-4-4, 4-6-5, ...).
_DIGIT_RUN = re.compile(r"(?<!\d)(?<!\d[.,])\d(?:[ -]?\d){12,22}(?!\d)(?![.,]\d)")
_DOTTED_CARD = re.compile(r"(?<![0-9.])\d{4}(?:\.\d{4}){3}(?:\.\d{1,3})?(?![0-9]|\.\d)")


def _cards(text: str) -> Iterator[Span]:
    for match in _DOTTED_CARD.finditer(text):  # 4111.1111.1111.1111
        if luhn_valid(_digits(match.group(0))):
            yield match.span()
    for match in _DIGIT_RUN.finditer(text):
        # A run may join a card to a neighbouring number ("4111 1111 1111 1111 12"):
        # look for the longest stretch of whole digit groups that is a card.
        groups = [(m.start() + match.start(), m.end() + match.start()) for m in re.finditer(r"\d+", match.group(0))]
        best = None
        for i in range(len(groups)):
            for j in range(min(len(groups), i + 10), i, -1):  # nobody writes a card in more than 10 groups
                n_digits = sum(b - a for a, b in groups[i:j])
                if not 13 <= n_digits <= 19:
                    continue
                digits = _digits(text[groups[i][0]:groups[j - 1][1]])
                if luhn_valid(digits):
                    if best is None or groups[j - 1][1] - groups[i][0] > best[1] - best[0]:
                        best = (groups[i][0], groups[j - 1][1])
                    break
        if best is not None and (text[best[0]] == "0" or text[max(0, best[0] - 1):best[0]] == "+"):
            continue  # no card number starts with 0: "0044 7911 123456" is a phone number
        if best is not None and re.match(r"\d{2}[ -]\d{2}[ -]\d{2}[ -]", text[best[0]:best[1]]):
            continue  # "40-47-84 71234567": a sort code and an account number, not a card
        if best is not None and _is_timestamp(text[best[0]:best[1]]):
            continue  # "20261202-122937": a date and time (Rasa's model names, log stamps), not a card
        if best is None:
            best = _card_shaped(text, match)
        if best is None:
            continue
        one_piece = best[1] - best[0] == len(_digits(text[best[0]:best[1]]))
        if one_piece and (_named_not_personal(text, best[0]) or (best[0] > 0 and text[best[0] - 1].isascii() and text[best[0] - 1].isalpha())):
            continue  # "order 4111111111111111", "1Z4111...": an identifier that happens to pass Luhn
        yield best


_TIMESTAMP = re.compile(r"(?:19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])[-_T]([01]\d|2[0-3])[0-5]\d[0-5]\d")


def _is_timestamp(written: str) -> bool:
    """Whether `written` is a compact date and time, YYYYMMDD-HHMMSS."""
    return _TIMESTAMP.fullmatch(written) is not None


_CARD_CUE = re.compile(r"(?i)(?<![A-Za-z])(?:card|debit|credit|visa|mastercard|amex|卡号|卡)[^0-9\n]{0,20}$")
_GROUPED_16 = re.compile(r"\d{4}([ -])\d{4}\1\d{4}\1\d{4}")


def _card_shaped(text: str, match: "re.Match[str]") -> Optional[Span]:
    """A card number that fails the Luhn check (mistyped) but is still written like one."""
    written = match.group(0)
    digits = _digits(written)
    if _GROUPED_16.fullmatch(written):
        return match.span()
    if len(digits) == len(written) and 15 <= len(digits) <= 19 and not _named_not_personal(text, match.start()):
        if _CARD_CUE.search(text[max(0, match.start() - 30):match.start()]) or (len(digits) == 16 and digits[0] in "3456"):
            return match.span()
    return None


_SORT_NAMED = re.compile(
    r"(?i)(?<![A-Za-z])(?:sort[\s-]*code|sortcode|s/c|sc)\s*(?:is|:|-|=|no\.?)?\s*(\d{2}[\s-]?\d{2}[\s-]?\d{2})(?![0-9])"
)
_SORT_SHAPE = re.compile(r"(?<![0-9A-Za-z/.:-])(\d{2})-(\d{2})-(\d{2})(?![0-9A-Za-z]|[-/.:]\d)")
_DATE_WORD_BEFORE = re.compile(
    r"(?i)(?<![A-Za-z])(?:on|since|from|until|till|by|dated|date|before|after|between|and|expires?|expiry|exp|"
    r"due|of|in|born|dob|birth|birthday)\s*[:-]?\s*$"
)
_ACCOUNT_AFTER_SORT = re.compile(
    r"(?i)^\s*(?:[,/&;]|and|acc(?:ount)?(?:\s+(?:number|no))?|a/c|acct)?\s*(?:[,/:#]\s*)?(\d{8})(?![0-9])"
)


def _sort_codes(text: str) -> Iterator[Span]:
    for match in _SORT_NAMED.finditer(text):
        yield match.span(1)
    for match in _SORT_SHAPE.finditer(text):
        a, b = int(match.group(1)), int(match.group(2))
        date_like = (1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31)
        if date_like and not _ACCOUNT_AFTER_SORT.match(text[match.end():]):
            if _DATE_WORD_BEFORE.search(text[max(0, match.start() - 16):match.start()]):
                continue
        yield match.span()


_ACCOUNT_CONTEXT = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:account|acct|acc|a/c|customer|client|member|membership|bsb|loan|mortgage|savings|"
    r"current|policy|roll)(?:\s+(?:number|no|num|nr|id|ref|reference))?\.?(?:\s*(?:is|:|#|=|-|no\.?))*\s*"
    r"(?:,?\s*(?:is\s+it|it'?s|i\s+think|maybe|should\s+be)\s*:?\s*)?"
    r"|(?:账号|帐号|账户|帐户|户号|卡号|客户号)\s*[:：是为]?\s*)$"
)
_ACCOUNT_NUMBER = re.compile(r"(?<![0-9])\d(?:[ -]?\d){5,18}(?![0-9])")


_MONEY_MOVED_TO = re.compile(r"(?i)(?<![A-Za-z])(?:to|from|into|onto)\s+(?:my\s+|the\s+|his\s+|her\s+)?(?:account\s+)?$")
_COMPACT_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


def _accounts(text: str) -> Iterator[Span]:
    for match in _ACCOUNT_NUMBER.finditer(text):
        start = match.start()
        before = text[max(0, start - 40):start]
        if _ACCOUNT_CONTEXT.search(before):
            yield match.span()
        elif re.fullmatch(r"\d{8}", match.group(0)) and _MONEY_MOVED_TO.search(before) and not _COMPACT_DATE.fullmatch(match.group(0)):
            yield match.span()  # "transfer from 23456789 to 87654321": UK account numbers are 8 digits
    for match in _SORT_NAMED.finditer(text):
        after = _ACCOUNT_AFTER_SORT.match(text[match.end():])
        if after:
            yield match.end() + after.start(1), match.end() + after.end(1)
    for match in _SORT_SHAPE.finditer(text):
        after = _ACCOUNT_AFTER_SORT.match(text[match.end():])
        if after:
            yield match.end() + after.start(1), match.end() + after.end(1)


_PASSPORT_CUE = re.compile(r"(?i)(?<![A-Za-z])passport|护照")
_PASSPORT_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z]*\d)[A-Za-z0-9]{6,10}(?![A-Za-z0-9])")


def _passports(text: str) -> Iterator[Span]:
    for cue in _PASSPORT_CUE.finditer(text):
        token = _PASSPORT_TOKEN.search(text, cue.end(), min(len(text), cue.end() + 40))
        if token and not _DATE_ANY.fullmatch(token.group(0)):
            yield token.span()


_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DATE = (
    r"(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})"
    r"|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}"
    r"|\d{1,2}(?:st|nd|rd|th)?(?:\s+of)?\s+" + _MONTH + r"\.?,?\s+\d{4}"
    r"|" + _MONTH + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}"
    r"|\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*[日号]?)"
)
_DATE_ANY = re.compile(r"(?i)" + _DATE)
_DOB_CUE = re.compile(
    r"(?i)(?<![A-Za-z])(?:date\s+of\s+birth|d\.?\s?o\.?\s?b\.?|birth\s*date|birthday|born)(?![A-Za-z])|出生日期|出生年月日?|出生于|出生|生日"
)
_DOB_AFTER = re.compile(r"(?i)\s*(?:is|was|:|-|=|on|in|是|为|：)?\s*(?:is|on|:)?\s*(?:the\s+)?(" + _DATE + r")(?![0-9])")
_DOB_BEFORE = re.compile(r"(?i)(?<![0-9])(" + _DATE + r")\s*(?:is|was|[-:(,])?\s*(?:my|his|her|the)?\s*$")


def _dates_of_birth(text: str) -> Iterator[Span]:
    for cue in _DOB_CUE.finditer(text):
        after = _DOB_AFTER.match(text, cue.end())
        if after:
            yield after.span(1)
            continue
        before = _DOB_BEFORE.search(text[max(0, cue.start() - 40):cue.start()])
        if before:
            offset = max(0, cue.start() - 40)
            yield offset + before.start(1), offset + before.end(1)


_PHONE_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z+])(?<![0-9A-Za-z][/-])(?<!\d[.,:])(?:\+|00)?(?:\(\d{1,5}\)|\d{1,5})(?:[ .-]?(?:\(0\)|\(\d{1,5}\))?[ .-]?\d{1,5}){1,6}(?![0-9]|[.,:]\d)"
)
_PHONE_CUE = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:call|phone|mobile|mob|tel|telephone|cell|ring|text|sms|whatsapp|fax|landline|number|contact|reach|ph|digits)"
    r"[^0-9\n]{0,20}|电话|手机|联系|号码)$"
)
_PHONE_REGIONS = ("GB", "US", "CN", "DE", "FR", "IE", "NL", "IT", "ES")
# phonenumbers loads a region's metadata on first use (milliseconds each): load them now, not
# during a customer's message.
for _region in _PHONE_REGIONS:
    phonenumbers.PhoneMetadata.metadata_for_region(_region)
for _code in (1, 33, 34, 39, 44, 49, 86, 353, 31):
    phonenumbers.PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(_code))
_TIME_OR_DATE = re.compile(r"(?i)\d{1,2}[:.]\d{2}|" + _DATE)


def _phone_ok(candidate: str, cue: bool) -> bool:
    digits = _digits(candidate)
    if not 7 <= len(digits) <= 15 or _TIME_OR_DATE.fullmatch(candidate) or _DATE_ANY.match(candidate):
        return False
    try:
        if candidate.startswith(("+", "00")):
            number = phonenumbers.parse("+" + digits[2:] if candidate.startswith("00") else candidate, None)
            return phonenumbers.is_possible_number(number)  # "+" and 7 to 15 digits: a phone number
        plain = candidate.lstrip("(")
        if plain.startswith("0"):
            regions = ("GB", "DE", "FR", "IE", "NL", "IT", "CN")
        elif re.fullmatch(r"1[3-9]\d{9}", digits):
            regions = ("CN",)
        elif re.fullmatch(r"1?[2-9]\d{9}", digits):
            regions = ("US",)
        else:
            return False
        shaped = len(digits) != len(candidate)  # written with spaces, dashes, brackets
        for region in regions:
            number = phonenumbers.parse(candidate, region)
            if phonenumbers.is_valid_number(number):
                return True
            if (cue or shaped) and region in ("GB", "US") and phonenumbers.is_possible_number(number):
                return True
            if region == "GB" and re.fullmatch(r"07\d{9}", digits) and phonenumbers.is_possible_number(number):
                return True  # a UK mobile number, also from the ranges kept for drama (07700 900xxx)
    except phonenumbers.NumberParseException:
        return False
    return False


def _phones(text: str) -> Iterator[Span]:
    for match in _PHONE_CANDIDATE.finditer(text):
        start = match.start()
        if not match.group(0).startswith("+") and _named_not_personal(text, start):
            continue
        cue = bool(_PHONE_CUE.search(text[max(0, start - 30):start]))
        # The candidate may run into a neighbouring number: try whole groups, longest first.
        groups = list(re.finditer(r"\+?\(?\d+\)?", match.group(0)))
        counts = [len(_digits(g.group(0))) for g in groups]
        for j in range(len(groups), 0, -1):
            if not 7 <= sum(counts[:j]) <= 15:
                continue
            end = start + groups[j - 1].end()
            if _phone_ok(text[start:end], cue):
                yield start, end
                break


# UK postcode areas (Royal Mail), so that "a4 2pp" is not taken for a postcode.
_UK_AREAS = (
    "AB AL B BA BB BD BH BL BN BR BS BT CA CB CF CH CM CO CR CT CV CW DA DD DE DG DH DL DN DT DY E EC EH EN EX FK FY "
    "G GL GU GY HA HD HG HP HR HS HU HX IG IM IP IV JE KA KT KW KY L LA LD LE LL LN LS LU M ME MK ML N NE NG NN NP NR "
    "NW OL OX PA PE PH PL PO PR RG RH RM S SA SE SG SK SL SM SN SO SP SR SS ST SW SY TA TD TF TN TQ TR TS TW UB W WA "
    "WC WD WF WN WR WS WV YO ZE"
).split()
_UK_POSTCODE = (
    r"(?:(?:" + "|".join(sorted(_UK_AREAS, key=len, reverse=True)) + r")\d[A-Za-z\d]?\s?\d[ABD-HJLNP-UW-Zabd-hjlnp-uw-z]{2})"
)
_UK_POSTCODE_RE = re.compile(_NB + r"(?i:" + _UK_POSTCODE + r")" + _NA)
_STREET_WORDS = (
    r"street|st|road|rd|lane|ln|avenue|ave|av|close|drive|dr|way|gardens|gdns|crescent|cres|terrace|terr|place|pl|grove|"
    r"court|ct|boulevard|blvd|square|sq|parade|mews|row|hill|walk|park|rise|view|green|highway|hwy|parkway|pkwy|"
    r"circle|cir|trail|plaza|broadway"
)
_CAP_WORD = r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’-]*"
_STREET_EN = re.compile(
    r"(?i)" + _NB + r"(?:(?:flat|apartment|apt|unit|suite|room)\s*#?\d+[A-Za-z]?,?\s+"
    r"(?:(?:[A-Za-z'’-]+\s+){1,2}(?:house|court|building|mansions|lodge|tower|apartments|point|heights|hall|place),?\s+)?)?"
    r"\d{1,5}[A-Za-z]?,?\s+"
    r"(?:" + _CAP_WORD + r"\s+){1,3}(?:" + _STREET_WORDS + r")\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)(?=,))?" + _NA
)
_STREET_EU = re.compile(
    r"(?i)" + _NB + r"(?:[A-Za-zÀ-ÿ-]+(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|straat|laan|gracht|plein|"
    r"steeg|kade|singel|dijk|vej|gade|gatan|vägen|veien)|(?:calle|carrer|avenida|avda\.?|via|viale|piazza|corso|rua|"
    r"plaza|paseo|travessa|largo|rue|avenue|boulevard|chaussée|place|quai)(?:\s+(?:de|del|della|da|do|du|des|la|le|las|los|dos|das|l'))*"
    r"(?:\s+" + _CAP_WORD + r"){1,3}?"
    r"|[A-ZÄÖÜ][A-Za-zäöüßÀ-ÿ-]+\s+(?:allee|straße|strasse|weg|platz|ring|damm|gasse|laan|straat|kade|gracht|steenweg))"
    r"\s+\d{1,4}[A-Za-z]?" + _NA
)
_STREET_FR = re.compile(
    r"(?i)" + _NB + r"\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai|cours|route)"
    r"(?:\s+[A-Za-zÀ-ÿ'’-]+){1,5}?(?=\s*,|\s+\d{5}" + _NA + r"|\s*$)"
)
_ADDRESS_TAIL = re.compile(
    r"(?:,?\s*(?i:apt|apartment|suite|unit|flat)\.?\s*#?\w+)?,?\s*"
    r"(?:(?P<town>[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’.-]*(?:\s+[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'’.-]*){0,2}?),?\s+)?"
    r"(?P<code>(?i:" + _UK_POSTCODE + r")|[A-Za-z]{2}\s+\d{5}(?:-\d{4})?|\d{5}(?:-\d{4})?|\d{4}\s?[A-Za-z]{2}|\d{4}-\d{3}|\d{4})"
    + _NA
)
_EU_TOWN_AFTER_CODE = re.compile(
    r"\s+[A-ZÀ-Ýa-zà-ÿ][A-Za-zÀ-ÿ'’-]+(?:\s+(?:am|an|der|de|del|la|le|sur|im)\s+[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ-]+|\s+Haag|\s+haag)?"
)
_TOWN_ONLY = re.compile(r",?\s+(?P<town>[A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+)?)(?=\s*(?:[,.!?;\n]|$))")
_POSTCODE_CUE = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:post\s*code|postal\s*code|zip(?:\s*code)?|postcode|plz)\s*(?:is|:|-|=)?\s*|邮编\s*[:：是为]?\s*)"
    r"((?i:" + _UK_POSTCODE + r")|\d{5}(?:-\d{4})?|\d{4}\s?[A-Za-z]{2}|\d{4,6})" + _NA
)
_NOT_CN_PLACE = "我你他她住在到寄是的址为：:，。、请谢"
_CN_ADDRESS = re.compile(
    r"(?:(?:(?![" + _NOT_CN_PLACE + r"])[" + _CJK + r"]){2,4}(?:省|自治区))?"
    r"(?:(?![" + _NOT_CN_PLACE + r"])[" + _CJK + r"]){2,4}市"
    r"(?:(?:(?![" + _NOT_CN_PLACE + r"])[" + _CJK + r"]){1,5}?(?:区|县))?"
    r"(?:(?![" + _NOT_CN_PLACE + r"])[" + _CJK + r"0-9]){1,10}?(?:路|街|大道|道|巷|弄|胡同)"
    r"\d{1,5}号(?:\d{1,4}(?:栋|号楼|幢|单元))?(?:\d{1,5}室)?"
)


def _extend_address(text: str, end: int, european: bool = False) -> int:
    tail = _ADDRESS_TAIL.match(text, end)
    if tail and (european or re.search(r"[A-Za-z]", tail.group("code")) or tail.group("town") or
                 re.fullmatch(r"\d{5}(?:-\d{4})?", tail.group("code"))):
        stop = tail.end()
        if re.fullmatch(r"\d{4,5}(?:-\d{3})?|\d{4}\s?[A-Za-z]{2}", tail.group("code")) and not tail.group("town"):
            town = _EU_TOWN_AFTER_CODE.match(text, stop)  # "10115 Berlin"
            if town:
                stop = town.end()
        return stop
    town = _TOWN_ONLY.match(text, end)
    return town.end() if town else end


_ADDRESS_CUE = re.compile(
    r"(?i)(?<![A-Za-z])(?:address|addr|addy|adres|adresse|direcci[oó]n|indirizzo|endereço|anschrift|live\s+at|moved\s+to|"
    r"staying\s+at|send\s+(?:it|the\s+card|them)\s+to|post\s+it\s+to|deliver\s+(?:it\s+)?to)"
    r"(?:\s+(?:is|was|now|:|-|=|ist|est|es|è|é))*\s*[:\-]?\s*"
)
# After an address cue: "Damrak 70, 1012 LM Amsterdam", "Rua Augusta 12": capitalised words and a number.
_PO_BOX = re.compile(r"(?i)" + _NB + r"(?:p\.?\s?o\.?\s?box|post\s+office\s+box|postfach)\s*#?\d{1,6}" + _NA)
_STREET_PLAIN = re.compile(r"(?:[A-ZÀ-Ý][A-Za-zÀ-ÿ'’.-]+\s+){1,3}\d{1,4}[A-Za-z]?" + _NA)


def _addresses(text: str) -> Iterator[Span]:
    lower_writer = None
    for pattern in (_STREET_EN, _STREET_FR, _STREET_EU):
        for match in pattern.finditer(text):
            if pattern is _STREET_EN and not re.search(r"\d[A-Za-z]?,?\s+[A-Z]", match.group(0)):
                # "24/7 line close": street words are ordinary words too; a street name is capitalised
                # unless the whole message is in lower case.
                lower_writer = _lower_case_writer(text) if lower_writer is None else lower_writer
                tail = _ADDRESS_TAIL.match(text, match.end())
                if not lower_writer and not (tail and re.search(r"[A-Za-z]", tail.group("code"))):
                    continue  # lower case, but followed by a postcode: still an address
            if pattern is _STREET_EN and match.start() > 0 and text[match.start() - 1] in "/-":
                continue
            yield match.start(), _extend_address(text, match.end(), pattern is not _STREET_EN)
    for match in _PO_BOX.finditer(text):
        yield match.start(), _extend_address(text, match.end(), True)
    for cue in _ADDRESS_CUE.finditer(text):
        street = _STREET_PLAIN.match(text, cue.end())
        if street:
            yield street.start(), _extend_address(text, street.end(), True)
    for match in _UK_POSTCODE_RE.finditer(text):
        yield match.span()
    for match in _POSTCODE_CUE.finditer(text):
        yield match.span(1)
    for match in _CN_ADDRESS.finditer(text):
        yield match.span()


# --- names ----------------------------------------------------------------------

# Common given names (English-speaking countries, Europe, South Asia, Africa, the
# Muslim world); a name outside the list is still found after a strong cue.
_FIRST_NAMES = frozenset("""
aaron abby abdul abdullah abigail adam adrian agnes ahmed aidan aisha alan albert alex alexander alexandra alfie ali
alice alicia alison amanda amber amelia amir amy ana andrea andreas andrew andy angela angus anita ann anna anne annie
anthony antonio archie arjun arthur ashley aurora austin ava barbara barry beatrice ben benjamin bernard beth bethany
bill billy bob bonnie brandon brenda brian bridget bruce caitlin callum cameron camille carl carla carlos carmen
carol caroline carolyn catherine charles charlie charlotte chen cheryl chloe chris christian christina christine
christopher claire clara claudia colin connor craig dan daniel daniela danielle darren dave david dawn dean debbie
deborah declan denise dennis derek diana diane dominic donald donna doris dorothy douglas duncan dylan edward eileen
elaine eleanor elena eli elizabeth ella ellie emily emma eric erin ethan eva evan evelyn faisal fatima felix fiona
florence frances francesca francis frank fred freddie freya gabriel gary gavin gemma george georgia gerald gillian
giovanni giulia glen gloria gordon grace graham greg gregory hamza hannah harold harriet harry hassan hayley heather
hector helen henry holly hugh hugo ian imogen irene isaac isabel isabella isabelle isla ivan jack jackie jacob jake
james jamie jan jane janet janice jasmine jason javier jay jean jeff jeffrey jennifer jenny jeremy jessica jill jim
jimmy joan joanna joanne joe joel john johnny jonathan jordan jorge jose joseph josephine joshua joy joyce juan judith
judy julia julian julie june justin karen karim kate katherine kathleen kathryn katie kayla keith kelly ken kenneth
kerry kevin kieran kim kimberly kirsty kyle lara laura lauren lee leo leon leonardo lewis liam lily linda lindsay lisa
logan lois lola louis louise luca lucas lucia lucy luis luke lydia lynn maddie madison maggie malcolm manuel marco
margaret maria marie marion mark martha martin mary mason matilda matt matthew maureen max maya megan melanie melissa
mia michael michelle miguel mike mila millie mohammed mohammad molly monica muhammad nadia naomi natalie natasha nathan
neil niamh nicholas nick nicola nicole nigel nina noah noel nora norman olive oliver olivia omar oscar owen pablo pam
pamela patricia patrick paul paula pauline pedro penny peter philip phoebe pierre pippa poppy priya rachel rahul raj
ralph ramon rebecca richard rita rob robert robin roger ronald rosa rose rosie ross roy ruby russell ruth ryan sally
sam samantha samuel sandra sara sarah scott sean sebastian sergio shane sharon sheila shirley simon sofia sophia sophie
stacey stanley stella stephanie stephen steve steven stuart sue susan suzanne sylvia tanya teresa terry theo theresa
thomas tim timothy tina toby tom tommy tony tracy trevor una valerie vanessa vera victor victoria vincent violet wayne
wendy william willow yasmin yvonne zach zara zoe anjali lukas marie amit sunil deepak pooja neha rohan vikram sanjay
hans klaus jürgen stefan wolfgang katarina olga sven lars erik nils jens piotr pawel tomasz marek agnieszka francois
jacques luc sophie chiara marta pablo diego alejandro mateo valentina jess jo liz beth bec becky kat katy steph
jen jenny abi ali andy nick rob bob dan sam tom tim matt chris pete mike dave jim joe ed ted will harry charlie
bex mo ash jay kaz gaz baz nat vic viv val sue pat meg maddy millie ollie alfie archie
""".split())

# Capitalised words that are not names: they follow "I'm", "this is", "Hi", "Thanks" too often.
_NOT_NAMES = frozenset("""
a about above actually after again against all almost already also always am an and angry annoyed another any anyone
anything are as at available away back bad bank banking be because been before being best better both but by can
cannot card cash checking closing concerned confused considering contacting could customer customers dear desperate
did do does doing done down during each either else email emailing even ever every everyone everything extremely fed
few fine for from frustrated furious getting glad going gone good got great guys had happy has have having he hello
help her here hey hi him his home hoping how however i if in interested is it its just keen kind last late later
leaving let like looking lost made madam making many may me messaging might mine more most much must my myself need
needing new next nice no none nor not nothing now of off ok okay old on once one only or other our out over please
pleased probably quite rather really regards ringing same see sending she should sick sincerely sir so some someone
something soon sorry still such sure team than thank thanks that the their them then there these they thing things
this those though through time to today tomorrow too trying unable under unhappy until up upset us using very waiting
was we well were what when where which while who why will wishes with without worried would writing yes yesterday yet
you your yours everybody folks support staff manager advisor adviser agent bot assistant friend friends again all
again morning afternoon evening night monday tuesday wednesday thursday friday saturday sunday january february march
april june july august september october november december mr mrs ms miss dr from london paris uk usa card account
atm app online visa mastercard amex paypal apple google amazon uber northwind i'm i’m it's it’s i'll i've i'd im ive
""".split())

_NAME_WORD = r"(?:[A-Z]['’][A-Z][a-zà-ÿ]+|Ma?c[A-Z][a-zà-ÿ]+|[A-Z][a-zà-ÿ]+(?:['’-][A-Z]?[a-zà-ÿ]+)?)"
_SURNAME_PARTICLE = r"(?:van\s+der|van\s+den|van|von|de\s+la|de|del|da|di|le|la|du|o'|al|el|bin|ibn)"
_FULL_NAME = re.compile(
    r"(?P<first>" + _NAME_WORD + r"|[a-zà-ÿ]+)"
    r"(?P<rest>(?:[ \t]+[A-Z]\.)?(?:[ \t]+(?:" + _SURNAME_PARTICLE + r"[ \t]+)?(?:" + _NAME_WORD + r"|[a-zà-ÿ'’-]+)){0,2})"
)

# Strong cues: whatever word follows is a name. Medium cues: a name only when the word is
# capitalised and not an ordinary word, or is a known first name.
_STRONG_CUE = re.compile(
    r"(?i)(?<![A-Za-z])(?:my\s+name\s+is|my\s+name'?s|name\s+is|name\s*[:\-–]|names?\s+on\s+the\s+(?:card|account)\s+(?:is|are|:)?|"
    r"account\s+holder(?:\s+is|\s*[:,])?|holder\s*:|i\s+am\s+called|call\s+me|signed|full\s+name\s*(?:is|:)?|"
    r"(?:payee|recipient|beneficiary)(?:'?s)?(?:\s+(?:name|details))?\s*(?:is|:)|in\s+the\s+name\s+of|account\s+name\s*(?:is|:)?|"
    r"(?:from|contact|sender|customer|applicant|cardholder|card\s+holder)\s*:)\s*$"
)
# A title written as one ("Dr", "Mrs", "mr"; not the verb "miss"): the capitalised word after it is a name.
_TITLE_CUE = re.compile(r"(?<![A-Za-z])(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|MR|MRS|MS|DR|mr|mrs|ms|dr)\.?[ \t]*$")
_MEDIUM_CUE = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:this\s+is|it'?s|i'?m|i\s+am|im|hi|hello|hey|dear|name\s*,?|thanks|thank\s+you|many\s+thanks|cheers|"
    r"(?:hi|hello|hey)\s+there|thanks\s+so\s+much|thank\s+you\s+so\s+much|good\s+(?:morning|afternoon|evening)|"
    r"sorry|regards|kind\s+regards|best\s+regards|best\s+wishes|warm\s+regards|best|sincerely|yours\s+sincerely|"
    r"yours\s+faithfully|yours|thx|ta|love|morning|afternoon|evening|welcome|speak\s+soon|talk\s+soon|take\s+care|"
    r"all\s+the\s+best|with\s+thanks|thanks\s+again|warmly|respectfully|"
    r"my\s+(?:wife|husband|partner|son|daughter|mother|mum|mom|father|dad|brother|sister|friend|"
    r"grandmother|grandfather|gran|nan|grandad|colleague|boss|landlord|tenant|carer|aunt|uncle|niece|nephew|fiancée?)"
    r"|for\s+my\s+[a-z]+\s*,?|behalf\s+of(?:\s+my\s+[a-z]+\s*,?)?)\s*[,:!.\-–]?\s*(?:\n\s*)?|(?:^|\n)\s*--?\s*)$"
)
# A known first name and a capitalised word after it is a person, without any cue, unless it
# is a shop, a station or a brand named after one.
_KNOWN_PAIR = re.compile(r"(?<![A-Za-z'’-])([A-Z][a-z]+)[ \t]+(" + _NAME_WORD + r")(?![A-Za-z'’-])")
# First names that are also ordinary words: only after a cue.
_AMBIGUOUS_FIRST = frozenset(
    "will mark bill pat sue rob may june april grace rose joy faith hope ray dawn ash jay max nat sam art "
    "val viv vic mo ed bob jack kim lee dean frank gary penny holly ruby olive violet summer sunny".split()
)
_NOT_PEOPLE = frozenset("""
john lewis|thomas cook|ted baker|jack wills|victoria station|charles schwab|harvey nichols|morgan stanley|
charlotte tilbury|marks spencer|sainsbury's local|james villas|paul smith|karen millen|ben sherman|
oliver bonas|will smith|victoria line|elizabeth line|george street|mark up|grace period|sterling bank|
mary rose|rose cottage|victoria park|albert dock|james bond|santa claus|jack daniels|ronald mcdonald
""".replace("\n", "").split("|"))
_NAME_LINE = re.compile(
    r"(?m)(?<=\n)[ \t]*(" + _NAME_WORD + r"(?:[ \t]+(?:[A-Z]\.|(?:" + _SURNAME_PARTICLE + r"[ \t]+)?" + _NAME_WORD + r")){0,2})[ \t]*$"
)
_NAME_LINE_LOWER = re.compile(r"(?<=\n)[ \t]*([a-zà-ÿ]+(?:[ \t]+[a-zà-ÿ'’-]+)?)[ \t]*$")
_HERE = re.compile(
    r"(?:^|(?<=[.!?,\n]\s)|(?<=[,!]\s\s)|(?<=it's\s)|(?<=its\s)|(?<=It's\s)|(?<=^[A-Za-z]{2}\s)|(?<=^[A-Za-z]{3}\s)|(?<=^[A-Za-z]{4}\s))"
    r"(" + _NAME_WORD + r"(?:\s+" + _NAME_WORD + r")?)\s+here" + _NA
)
_CN_NAME_CUE = re.compile(r"(?:我叫|我是|姓名|名字是|名字叫|名叫|户名|本人|联系人|收件人)\s*[:：]?\s*")
_CN_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范"
    "金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪"
    "庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房"
    "滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁"
    "沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
_CN_COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "司徒", "夏侯")
_CN_NAME_STOP = set("，。、,.!！?？；;：: \n的是在想要请我你他她要卡电手号账地址身份出生护照邮箱需查询丢了和在住从给客户新老")
_CN_TITLES = ("先生", "女士", "小姐", "太太", "老师", "经理")


_INITIAL_SURNAME = re.compile(r"[A-Z]\.?\s+(?:[A-Z]\.?\s+)?" + _NAME_WORD)


def _name_from(text: str, start: int, strong: bool) -> Optional[Span]:
    initial = _INITIAL_SURNAME.match(text, start)  # "J Wilson", "J. R. Hartley"
    if initial and strong and initial.group(0).split()[-1].lower() not in _NOT_NAMES:
        return initial.span()
    match = _FULL_NAME.match(text, start)
    if not match:
        return None
    first = match.group("first")
    known = first.lower() in _FIRST_NAMES
    capitalised = first[0].isupper()
    if first.lower() in _NOT_NAMES or re.sub(r"['’]?s$", "", first.lower()) in _NOT_NAMES or len(first) < 2 or first.lower().endswith(("ing", "ly")) and not known:
        return None
    if first.lower() in _COMMON_WORDS and not known:
        return None
    name_shaped = bool(re.fullmatch(r"[A-Z][a-zà-ÿ'’]+(?:-[A-Z][a-zà-ÿ'’]+)*", first))  # "Anne-Marie"
    if not (known or (capitalised and strong) or (name_shaped and not strong and _capitalised_ok(text, start))
            or (strong and first.isalpha() and len(first) >= 3 and _lower_case_writer(text))):
        return None
    end = match.start("rest")
    # Surnames: capitalised words (or, in a lower-case message, words that are not ordinary words).
    for part in re.finditer(r"[ \t]+(?:[A-Z]\.|(?:" + _SURNAME_PARTICLE + r"[ \t]+)?(?:" + _NAME_WORD + r"|[a-zà-ÿ'’-]+))", match.group("rest")):
        word = part.group(0).strip()
        bare = re.sub(r"^" + _SURNAME_PARTICLE + r"\s+", "", word, flags=re.I) if " " in word else word
        if bare.lower() in _NOT_NAMES or bare.lower() in _COMMON_WORDS:
            break
        if not bare[0].isupper() and capitalised:
            break
        if bare.lower().endswith("ing"):
            break
        end = match.start("rest") + part.end()
    return start, end


def _lower_case_writer(text: str) -> bool:
    """Whether the message is written in lower case (then a name may be too)."""
    words = re.findall(r"[A-Za-z]+", text)
    return sum(w[0].isupper() for w in words) <= max(1, len(words) // 10)


def _capitalised_ok(text: str, start: int) -> bool:
    """A capitalised unknown word after a medium cue is a name unless the message capitalises every word."""
    words = re.findall(r"[A-Za-z]+", text)
    if len(words) >= 6 and sum(w[0].isupper() for w in words) / len(words) > 0.7:
        return False
    return True


def _names(text: str) -> Iterator[Span]:
    if not text:
        return
    for match in re.finditer(r"(?<=[\s,.:;!?(\-–'\"])(?=[A-Za-zà-ÿ])|^(?=[A-Za-z])|(?<=[" + _CJK + r"])(?=[A-Za-z])", text):
        start = match.start()
        before = text[max(0, start - 40):start]
        strong = bool(_STRONG_CUE.search(before)) or bool(re.search(r"(?:我叫|我是|姓名|户名|名字是)\s*[:：]?\s*$", before))
        if not strong and _TITLE_CUE.search(before) and (text[start].isupper() or _lower_case_writer(text)):
            strong = True
        if strong or _MEDIUM_CUE.search(before):
            span = _name_from(text, start, strong)
            if span:
                yield span
    for match in _NAME_LINE.finditer(text):
        first = match.group(1).split()[0]
        if first.lower() in _NOT_NAMES:
            continue
        if first.lower() in _FIRST_NAMES or len(match.group(1).split()) >= 2:
            yield match.span(1)
    for match in _KNOWN_PAIR.finditer(text):  # no cue: "Who is Peter Kovacs?"
        first, last = match.group(1), match.group(2)
        if first.lower() in _FIRST_NAMES and first.lower() not in _AMBIGUOUS_FIRST and last.lower() not in _NOT_NAMES and last.lower() not in _COMMON_WORDS \
                and f"{first} {last}".lower() not in _NOT_PEOPLE and not re.fullmatch(_STREET_WORDS, last, re.I):
            yield match.span()
    lower_line = _NAME_LINE_LOWER.search(text)  # "thanks\njohn smith" from someone who types in lower case
    if lower_line and lower_line.group(1).split()[0] in _FIRST_NAMES:
        if not any(w in _NOT_NAMES or w in _COMMON_WORDS for w in lower_line.group(1).split()):
            yield lower_line.span(1)
    for match in _HERE.finditer(text):  # "Becky Thompson here", "hi, Dominic here"
        words = match.group(1).split()
        if words[0].lower() in _FIRST_NAMES or (len(words) == 2 and not any(w.lower() in _NOT_NAMES for w in words)):
            yield match.span(1)
    for match in _CN_NAME_CUE.finditer(text):
        i = match.end()
        if text.startswith(_CN_COMPOUND_SURNAMES, i):
            surname_len = 2
        elif i < len(text) and text[i] in _CN_SURNAMES:
            surname_len = 1
        else:
            continue
        end = i + surname_len
        if text.startswith(_CN_TITLES, end):  # 王先生: the surname is what there is
            yield i, end
            continue
        while end < len(text) and end - i < surname_len + 2 and "\u4e00" <= text[end] <= "\u9fff" and text[end] not in _CN_NAME_STOP:
            if text.startswith(_CN_TITLES, end):
                break
            end += 1
        if end > i + surname_len:
            yield i, end


# Ordinary lower-case words that end a name in a lower-case message ("my name is john and ...").
_COMMON_WORDS = frozenset("""
and or but so because from here there calling writing speaking again please thanks thank the a an to of in on at for
with about my your his her our their is was are were be been am have has had do does did can could will would should
shall may might must not no yes if then than that this these those it its as by up down out over under again also too
very just only still even ever never always sometimes today tomorrow yesterday now soon later last next new old who what
when where why how which i you he she we they me him us them calling card account bank number email phone address dob
date born pls please plz need want help lost stolen blocked cant can't dont don't didnt didn't wont won't isn't is'nt
how's im i'm ive i've id i'd ill i'll youre you're theyre they're hi hello hey dear regards cheers thx ta love best
wishes sincerely faithfully yours kind many from of with who card lost in
""".split())


_SECRET = re.compile(
    r"(?i)(?:(?<![A-Za-z])(?:pin|cvv2?|cvc2?|csc|security\s+code|passcode|pass\s*code|one[\s-]?time\s+(?:pass)?code|otp|"
    r"verification\s+code|auth(?:entication)?\s+code)|密码|验证码|动态码|交易码)"
    r"(?:\s*(?:is|was|=|:|-|number|code|no\.?|on\s+the\s+back(?:\s+of\s+the\s+card)?|it'?s|now|still|是|为|：))*\s*"
    r"(\d{3,8})(?![0-9])"
)


def _secrets(text: str) -> Iterator[Span]:
    for match in _SECRET.finditer(text):
        yield match.span(1)


_DETECTORS: List[Tuple[str, Callable[[str], Iterator[Span]]]] = [
    (EMAIL, _emails),
    (IBAN, _ibans),
    (NATIONAL_ID, _national_ids),
    (CARD, _cards),
    (SORT_CODE, _sort_codes),
    (ACCOUNT, _accounts),
    (PASSPORT, _passports),
    (DOB, _dates_of_birth),
    (PIN, _secrets),
    (PHONE, _phones),
    (ADDRESS, _addresses),
    (NAME, _names),
]


# Full-width forms of ASCII (what Chinese and Japanese keyboards type: "０７７００ ９００１２３") and the
# ideographic space, mapped one character to one so that every detector sees ASCII and spans stay put.
_HALF_WIDTH = str.maketrans({**{chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)}, "\u3000": " "})


def find_personal_data(text: str) -> List[PersonalData]:
    """Every piece of personal data in `text`, in reading order, without overlaps (full-width digits
    and letters are read as their ASCII forms; the values keep the characters written)."""
    found: List[PersonalData] = []
    if not text:
        return found
    original, text = text, text.translate(_HALF_WIDTH)
    taken: List[Span] = []
    for kind, detect in _DETECTORS:
        for start, end in detect(text):
            while end > start and text[end - 1] in " ,.;:\n\t":
                end -= 1
            if end <= start or any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append(PersonalData(kind, start, end, original[start:end]))
    return sorted(found, key=lambda item: item.start)


# What `redact` puts in place of a piece of personal data: "[PHONE]", "[NATIONAL_ID]".
PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")


def redact(text: str) -> str:
    """`text` with every piece of personal data replaced by ``[KIND]``."""
    if not text:
        return text
    pieces, cursor = [], 0
    for item in find_personal_data(text):
        pieces.append(text[cursor:item.start])
        pieces.append(f"[{item.kind}]")
        cursor = item.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def redact_value(value: Any, max_depth: int = 8) -> Any:
    """`value` with `redact` applied to every string in it (dicts, lists, nested); keys are kept."""
    if isinstance(value, str):
        return redact(value)
    if max_depth <= 0:
        return value
    if isinstance(value, dict):
        return {key: redact_value(item, max_depth - 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item, max_depth - 1) for item in value)
    return value


_SELF_INTRODUCTION_BEFORE = re.compile(r"(?i)(?:this\s+is|i'?m|i\s+am|my\s+name\s+is|my\s+name'?s|it'?s|[-–]+)\s*$")


def redact_agent_reply(text: str, agent_name: str = "") -> str:
    """An agent's message redacted, except the agent's own name.

    An agent introduces themselves ("Robin here", "this is Robin", "I'm Robin
    from Northwind", a "- Robin" sign-off) or signs with the name of their
    staff account: that name is the agent's, not the customer's, and stays.
    Everything else is redacted as in a customer's message ("Hi Sarah" ->
    "Hi [NAME]").
    """
    if not text:
        return text
    own = {word.lower() for word in re.findall(r"[^\W\d_]+", agent_name or "")}
    pieces, cursor = [], 0
    for item in find_personal_data(text):
        if item.kind == NAME:
            words = {word.lower() for word in re.findall(r"[^\W\d_]+", item.text)}
            introduced = _SELF_INTRODUCTION_BEFORE.search(text[max(0, item.start - 20):item.start]) or \
                re.match(r"\s+here(?![A-Za-z])", text[item.end:])
            if introduced or (own and words <= own):
                continue
        pieces.append(text[cursor:item.start])
        pieces.append(f"[{item.kind}]")
        cursor = item.end
    pieces.append(text[cursor:])
    return "".join(pieces)


# Metadata keys the channels themselves set (identities, routing): never personal data typed by
# anyone, and needed exactly as they are. Every other metadata string is redacted.
CHANNEL_METADATA_KEYS = frozenset({
    "channel", "customer_id", "conversation_id", "verified_by", "rest_caller", "out_channel", "thread_id", "users",
    "chat_id", "in_reply_to", "message_id", "agent", "notice",
})


def redact_metadata(metadata: Any, max_chars: int = 4096) -> Any:
    """Message metadata with every string redacted except the values channels set (`CHANNEL_METADATA_KEYS`).

    Strings longer than `max_chars` are cut first (metadata is context, never a document).
    """
    def clean(value: Any, depth: int = 8) -> Any:
        if isinstance(value, str):
            return redact(value[:max_chars])
        if depth <= 0:
            return value
        if isinstance(value, dict):
            return {key: clean(item, depth - 1) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item, depth - 1) for item in value]
        return value

    if not isinstance(metadata, dict):
        return clean(metadata)
    return {key: value if key in CHANNEL_METADATA_KEYS else clean(value) for key, value in metadata.items()}


# Intents as the domain names them; a payload is what core.payloads says it is.
_INTENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def redact_message(text: str, known_intents: Optional[Iterable[str]] = None) -> str:
    """A customer's message redacted, button payloads included.

    A button payload keeps its shape so that the button still works, but only
    when its intent is one the assistant knows (`known_intents`, the domain's
    intents; without them: an intent-shaped name): its entity values are
    redacted like any text (``/inform{"x": "[CARD]"}``). Anything else that
    merely looks like a payload (``/4539148803436467``, ``/x{broken 4539...``,
    an intent the domain lacks) is redacted as the typed text it is. A payload
    the assistant offered carries ids and choices, never personal data, so it
    passes unchanged.
    """
    if not text:
        return text
    match = PAYLOAD.match(text.strip())
    if not match:
        return redact(text)
    intent, entities = match.group("intent"), match.group("entities")
    known = set(known_intents) if known_intents is not None else None
    if not _INTENT_NAME.fullmatch(intent) or (known is not None and intent not in known):
        return redact(text)
    if not entities:
        return text
    import json

    try:
        values = json.loads(entities)
    except (ValueError, RecursionError):
        return redact(text)
    if not isinstance(values, dict):
        return redact(text)
    cleaned = {redact(key) if isinstance(key, str) else key: redact_value(value) for key, value in values.items()}
    if cleaned == values:
        return text
    return "/" + intent + json.dumps(cleaned, ensure_ascii=False)


# --- measurement ----------------------------------------------------------------


def _match(gold: List[Span], found: List[Span]) -> int:
    """How many of `found` overlap a `gold` span, each gold span used once."""
    used, hits = set(), 0
    for start, end in found:
        for i, (g_start, g_end) in enumerate(gold):
            if i not in used and start < g_end and g_start < end:
                used.add(i)
                hits += 1
                break
    return hits


def _scores(tp: int, n_found: int, n_gold: int) -> Dict[str, float]:
    precision = tp / n_found if n_found else 1.0
    recall = tp / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"gold": n_gold, "found": n_found, "tp": tp, "precision": precision, "recall": recall, "f1": f1}


def _gold_spans(row: Dict[str, Any]) -> List[Tuple[str, int, int]]:
    out = []
    for span in row.get("spans", []):
        if isinstance(span, dict):
            out.append((span["kind"], span["start"], span["end"]))
        else:  # [start, end, kind]
            out.append((span[2], span[0], span[1]))
    return out


def evaluate(rows: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    """Precision, recall and F1 of `find_personal_data` on labelled rows, per kind and overall.

    A row is ``{"text": ..., "spans": [...]}`` with spans as ``{"kind", "start", "end"}``
    or ``[start, end, kind]``, listing everything that must be redacted. A found
    span counts when it overlaps a labelled span of the same kind; ``any kind``
    counts it whatever kind it was given; ``exact`` only when kind, start and
    end all agree. `training.bench_redaction` measures by masked character instead.
    """
    counts = {kind: [0, 0, 0] for kind in KINDS}  # tp, found, gold
    any_kind, exact = [0, 0, 0], [0, 0, 0]
    errors: List[Dict[str, Any]] = []
    n_rows = 0
    for row in rows:
        n_rows += 1
        text = row["text"]
        gold = _gold_spans(row)
        found = [(p.kind, p.start, p.end) for p in find_personal_data(text)]
        for kind in KINDS:
            g = [(a, b) for k, a, b in gold if k == kind]
            f = [(a, b) for k, a, b in found if k == kind]
            tp = _match(g, f)
            counts[kind][0] += tp
            counts[kind][1] += len(f)
            counts[kind][2] += len(g)
        tp_any = _match([(a, b) for _, a, b in gold], [(a, b) for _, a, b in found])
        any_kind[0] += tp_any
        any_kind[1] += len(found)
        any_kind[2] += len(gold)
        exact[0] += len(set(gold) & set(found))
        exact[1] += len(found)
        exact[2] += len(gold)
        if sorted(gold) != sorted(found):
            errors.append({
                "text": text,
                "expected": [f"{k}:{text[a:b]}" for k, a, b in gold],
                "found": [f"{k}:{text[a:b]}" for k, a, b in found],
            })
    per_kind = {kind: _scores(*c) for kind, c in counts.items()}
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {
        "rows": n_rows,
        "per_kind": per_kind,
        "overall": _scores(*total),
        "any_kind": _scores(*any_kind),
        "exact": _scores(*exact),
        "errors": errors,
    }


def format_report(result: Dict[str, Any]) -> str:
    """The evaluation as a Markdown table."""
    lines = [
        f"{result['rows']} labelled texts",
        "",
        "| kind | labelled | found | correct | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = list(result["per_kind"].items()) + [
        ("overall (kind must match)", result["overall"]),
        ("redacted at all (any kind)", result["any_kind"]),
        ("exact spans (kind and boundaries)", result["exact"]),
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['gold']} | {s['found']} | {s['tp']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m core.redaction --evaluate FILE.jsonl [--errors]``, or redact stdin line by line."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Redact personal data, or measure the redaction on labelled texts.")
    parser.add_argument("--evaluate", metavar="JSONL", help="labelled texts: {text, spans} per line")
    parser.add_argument("--errors", action="store_true", help="also print every text where the spans differ")
    parser.add_argument("--split", help="only rows whose 'split' is this (e.g. tuning, holdout); default: each split, then all")
    args = parser.parse_args(argv)
    if not args.evaluate:
        for line in sys.stdin:
            sys.stdout.write(redact(line))
        return 0
    rows = [row for _, row in read_jsonl(args.evaluate)]
    splits = [args.split] if args.split else sorted({r.get("split") for r in rows if r.get("split")}) + [None]
    for split in splits:
        chosen = [r for r in rows if split is None or r.get("split") == split]
        result = evaluate(chosen)
        print(f"## {split or 'all'}: " + format_report(result) + "\n")
    if args.errors:
        print()
        for error in result["errors"]:
            print(f"- {error['text']!r}\n    expected {error['expected']}\n    found    {error['found']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
