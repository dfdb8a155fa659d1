"""What customers type for the forms' slots, read into clean values.

Pure functions without Rasa, used by the form validation actions
(`bot/actions/forms.py`, `bot/actions/dialogue.py`). Each reader takes either
an entity's value (a short span such as "£50" or "last Friday") or, when a
form asked for that one slot, the customer's whole message, and returns the
value or None when the text holds none, or more than one, of them.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Iterator, List, Optional, Tuple


def _typed(text: Any) -> str:
    """`text` as a string with full-width forms (what Chinese and Japanese keyboards type:
    "１２３４", "＄５０") read as their ASCII forms (NFKC)."""
    return unicodedata.normalize("NFKC", "" if text is None else str(text))


# ------------------------------------------------------------------ card's last four digits

_FOUR_DIGITS = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")
_SPACED_DIGITS = re.compile(r"^[0-9][0-9 \-]*$")
# Card numbers have 12 to 19 digits; a run that long was never a "last four".
_CARD_NUMBER_RUN = re.compile(r"[0-9](?:[ \-.]?[0-9]){11,}")


def parse_card_last_four(text: Any) -> Optional[str]:
    """The last four digits of a card in what the customer typed, or None.

    Accepts "1234", "1 2 3 4", "it ends in 1234" and "last 4 digits: 1234";
    refuses anything with no group or several groups of four digits.
    """
    if text is None:
        return None
    text = _typed(text).strip()
    if _SPACED_DIGITS.match(text):
        digits = re.sub(r"[ \-]", "", text)
        return digits if len(digits) == 4 else None
    groups = _FOUR_DIGITS.findall(text)
    return groups[0] if len(groups) == 1 else None


def looks_like_full_card_number(text: Any) -> bool:
    """Whether `text` holds a whole card number: a run of 12 or more digits, or the desk's placeholder for one."""
    text = _typed(text)
    if "[CARD]" in text or "[ACCOUNT]" in text:  # core.redaction's placeholders (settings.redact_messages)
        return True
    return _CARD_NUMBER_RUN.search(text) is not None


# ------------------------------------------------------------------ amounts

_CURRENCY_OF_SYMBOL = {"£": "GBP", "$": "USD", "€": "EUR"}
_SYMBOL_OF_CURRENCY = {code: symbol for symbol, code in _CURRENCY_OF_SYMBOL.items()}
_CURRENCY_OF_WORD = {
    "pound": "GBP", "pounds": "GBP", "quid": "GBP", "gbp": "GBP", "p": "GBP",
    "euro": "EUR", "euros": "EUR", "eur": "EUR",
    "dollar": "USD", "dollars": "USD", "usd": "USD",
}
_AMOUNT = re.compile(
    r"(?<![\w/.,\-])(?P<minus>-\s*)?"
    r"(?:(?P<symbol>[£$€])\s*|(?P<code>gbp|eur|usd)\s+)?"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?)"
    r"(?:\s*(?P<word>pounds?|quid|gbp|euros?|eur|dollars?|usd|p)\b)?"
    r"(?!\w|[/.,\-]\d)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Money:
    """An amount of money in one currency (ISO 4217 code: GBP, EUR or USD)."""

    value: Decimal
    currency: str = "GBP"

    def __str__(self) -> str:
        """As the assistant writes it: "£1,200.50", "€20.00"."""
        sign = "-" if self.value < 0 else ""
        return f"{sign}{_SYMBOL_OF_CURRENCY[self.currency]}{abs(self.value):,.2f}"


def _money(match: "re.Match[str]") -> Optional[Tuple[Money, bool]]:
    """The amount one match names, and whether a currency was written with it."""
    word = (match.group("word") or "").lower()
    written = match.group("symbol") or match.group("code") or word
    try:
        value = Decimal(match.group("number").replace(",", ""))
    except InvalidOperation:
        return None
    if word == "p":  # pence: "50p"
        if match.group("symbol") or "." in match.group("number"):
            return None
        value = value / 100
    currency = (_CURRENCY_OF_SYMBOL.get(match.group("symbol") or "")
                or _CURRENCY_OF_WORD.get((match.group("code") or "").lower())
                or _CURRENCY_OF_WORD.get(word) or "GBP")
    if match.group("minus"):
        value = -value
    return Money(value.quantize(Decimal("0.01")), currency), bool(written)


def parse_amount(text: Any) -> Optional[Money]:
    """The one amount of money in `text` ("£50", "50 pounds", "$1,200.50", "45.99"), or None.

    Figures only (not "fifty"). A bare number counts as pounds; when some
    amounts carry a currency and others do not, only those with one count.
    Several different amounts are ambiguous (None).
    """
    found = [m for m in (_money(match) for match in _AMOUNT.finditer(_typed(text))) if m is not None]
    marked = [money for money, has_currency in found if has_currency]
    candidates = set(marked or [money for money, _ in found])
    return candidates.pop() if len(candidates) == 1 else None


# ------------------------------------------------------------------ dates

_MONTHS = {
    name: number
    for number, names in enumerate(
        (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")),
        start=1,
    )
    for name in names
}
_WEEKDAYS = {name: number for number, name in enumerate(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>\d{4}))?"
_DATE_PATTERNS = (
    ("iso", re.compile(r"(?<![\d/.\-])(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})(?![\d/.\-])")),
    ("numeric", re.compile(
        r"(?<![\d/.\-£$€])(?P<day>\d{1,2})[/.\-](?P<month>\d{1,2})(?:[/.\-](?P<year>\d{4}|\d{2}))?(?![\d/.\-])")),
    ("day_month", re.compile(r"\b" + _DAY + r"(?:\s+of)?\s+" + _MONTH + _YEAR + r"\b", re.IGNORECASE)),
    ("month_day", re.compile(r"\b" + _MONTH + r"\s+" + _DAY + _YEAR + r"\b", re.IGNORECASE)),
    ("relative", re.compile(r"\b(?P<word>the day before yesterday|yesterday|last night|today|tonight|this "
                            r"(?:morning|afternoon|evening)|tomorrow)\b", re.IGNORECASE)),
    ("weekday", re.compile(r"\b(?:(?P<last>last|this past)\s+)?(?P<weekday>" + "|".join(_WEEKDAYS) + r")\b",
                           re.IGNORECASE)),
    ("ago", re.compile(r"\b(?P<count>\d{1,3}|" + "|".join(_COUNTS) + r")\s+(?P<unit>days?|weeks?)\s+ago\b",
                       re.IGNORECASE)),
)
_RELATIVE_DAYS = {"the day before yesterday": -2, "yesterday": -1, "last night": -1, "today": 0, "tonight": 0,
                  "this morning": 0, "this afternoon": 0, "this evening": 0, "tomorrow": 1}


def _calendar_date(year: Optional[str], month: int, day: int, today: date) -> Optional[date]:
    """The date, or None if there is no such day; without a year, its latest occurrence up to today."""
    if year is not None:
        try:
            return date(int(year) + (2000 if len(year) == 2 else 0), month, day)
        except ValueError:
            return None
    for back in range(5):  # 29 February comes back within four years
        try:
            found = date(today.year - back, month, day)
        except ValueError:
            continue
        if found <= today:
            return found
    return None


def _dates_in(text: str, today: date) -> Iterator[Tuple[int, int, Optional[date]]]:
    """(start, end, date or None when the words name no real day) for every date expression in `text`."""
    for kind, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groupdict()
            if kind in ("iso", "numeric"):
                found = _calendar_date(groups["year"], int(groups["month"]), int(groups["day"]), today)
            elif kind in ("day_month", "month_day"):
                found = _calendar_date(groups["year"], _MONTHS[groups["month"].lower()], int(groups["day"]), today)
            elif kind == "relative":
                found = today + timedelta(days=_RELATIVE_DAYS[" ".join(groups["word"].lower().split())])
            elif kind == "weekday":
                back = (today.weekday() - _WEEKDAYS[groups["weekday"].lower()]) % 7
                found = today - timedelta(days=back or (7 if groups["last"] else 0))
            else:
                count = groups["count"].lower()
                days = int(count) if count.isdigit() else _COUNTS[count]
                found = today - timedelta(days=days * (7 if groups["unit"].lower().startswith("week") else 1))
            yield match.start(), match.end(), found


def parse_date(text: Any, today: Optional[date] = None) -> Optional[date]:
    """The one day `text` names, or None.

    Reads "yesterday", "today", "last Friday" (the latest Friday before today),
    "Friday" (the latest Friday, today included), "3 March", "March 3rd",
    "3rd of March 2025", "12/05" (day first, as in the UK), "12/05/2025",
    "2025-05-12" and "3 days ago". A day and month without a year is the latest
    such day up to `today`. Several different days, or a day that does not
    exist ("31/02"), give None.
    """
    today = today or date.today()
    spans: List[Tuple[int, int, Optional[date]]] = []
    for start, end, found in _dates_in(_typed(text), today):
        if not any(start < other_end and other_start < end for other_start, other_end, _ in spans):
            spans.append((start, end, found))
    days = {found for _, _, found in spans}
    return days.pop() if len(days) == 1 else None


# ------------------------------------------------------------------ accounts and merchants

# The customer's own Northwind accounts, as the assistant names them. Other words for
# them ("checking", "main account") are synonyms in the NLU data (bot/data/nlu.yml).
ACCOUNT_TYPES = ("current", "savings", "joint", "ISA")
_ACCOUNT_WORDS = {"current": "current", "savings": "savings", "saving": "savings", "joint": "joint", "isa": "ISA"}
_ACCOUNT_WORD = re.compile(r"\b(" + "|".join(_ACCOUNT_WORDS) + r")\b", re.IGNORECASE)


def parse_account_type(text: Any) -> Optional[str]:
    """The one account type (one of ACCOUNT_TYPES) named in `text`, or None."""
    named = {_ACCOUNT_WORDS[word.lower()] for word in _ACCOUNT_WORD.findall(_typed(text))}
    return named.pop() if len(named) == 1 else None


MAX_MERCHANT_CHARS = 60
_LEAD_IN = re.compile(
    r"^(?:(?:it|that|this)\s+(?:was|is)|it's|the\s+(?:shop|company|merchant|payment)\s+(?:was|is)"
    r"|(?:i\s+)?paid|(?:a\s+)?payment)?\s*(?:(?:to|at|from|with|by)\s+)?(?:the\s+shop\s+)?",
    re.IGNORECASE,
)


def merchant_name(text: Any) -> Optional[str]:
    """The shop or company name in `text` ("it was Tesco" -> "Tesco"), or None if there is none.

    A name has a letter, at most MAX_MERCHANT_CHARS characters and no card number.
    """
    text = " ".join(str(text or "").split())
    if looks_like_full_card_number(text):
        return None
    name = _LEAD_IN.sub("", text, count=1).strip(" .,!?;:'\"")
    if not name or len(name) > MAX_MERCHANT_CHARS or not any(ch.isalpha() for ch in name):
        return None
    return name
