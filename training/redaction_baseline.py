# Frozen copy of core/redaction.py as it was before issue 13 (`git show 9e23872:core/redaction.py`),
# kept only so that `python -m training.bench_redaction` prints the old redactor beside the new one
# in the same run. Do not change it.
"""Personal data out of text before it is embedded, stored or shown to staff.

`redact(text)` replaces each piece of personal data by a placeholder naming its
kind; `find_personal_data(text)` returns where each piece is, for reports
and measurement. Kinds, in the order they are looked for (an earlier kind
wins where two overlap):

- ``[EMAIL]``   e-mail addresses, also the "name [at] host [dot] com" form;
- ``[IBAN]``    IBANs, with or without spaces, checked with ISO 13616 mod 97
                (a well-formed IBAN of a known country with a bad check is
                redacted too: a mistyped IBAN is still someone's account);
- ``[CARD]``    13 to 19 digits, grouped or not, that pass the Luhn check;
- ``[PHONE]``   international (+44 ..., 0044 ...), national (07700 900123,
                (020) 7946 0018) and North American (555-123-4567) numbers;
- ``[ACCOUNT]`` sort codes and account or customer numbers: a run of 6 to 17
                digits after words such as "account", "acct", "a/c", "sort
                code", "customer number", "reference"; and any run of 8 or more
                digits anywhere (in a support chat that is an identifier far
                more often than anything else), except amounts of money
                and dates;
- ``[PIN]``     3 to 6 digits right after "PIN", "CVV", "CVC", "security
                code" or "passcode": never personal data a bank may keep.

Placeholders never match a detector, so redacting twice changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

EMAIL, IBAN, CARD, PHONE, ACCOUNT, PIN = "EMAIL", "IBAN", "CARD", "PHONE", "ACCOUNT", "PIN"


@dataclass(frozen=True)
class PersonalData:
    """One piece of personal data found in a text: its kind and where it is."""

    kind: str
    start: int
    end: int
    text: str


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


# --- detectors ----------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+'-])[A-Za-z0-9][A-Za-z0-9._%+'-]*"
    r"(?:@|\s*[\[(]\s*at\s*[\])]\s*)"
    r"[A-Za-z0-9-]+(?:(?:\.|\s*[\[(]\s*dot\s*[\])]\s*)[A-Za-z0-9-]+)*"
    r"(?:\.|\s*[\[(]\s*dot\s*[\])]\s*)[A-Za-z]{2,24}\b",
    re.IGNORECASE,
)
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}\b")
# Digits in groups separated by single spaces or dashes (cards are written 4-4-4-4, 4-6-5, ...).
_DIGIT_RUN = re.compile(r"(?<![\w.,])\d(?:[ -]?\d){5,22}(?![\w]|[.,]\d)")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+|00)\d{1,3}[\s.-]?(?:\(0\)[\s.-]?)?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"  # international
    r"|\(0\d{1,4}\)[\s.-]?\d{3,4}[\s.-]?\d{3,4}"  # (020) 7946 0018
    r"|0\d{2,4}[\s.-]?\d{3,4}[\s.-]?\d{3,4}"  # 07700 900123, 020-7946-0018
    r"|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}"  # 555-123-4567, (555) 123-4567
    r")(?![\w])"
)
_SORT_CODE = re.compile(r"(?i)\bsort[\s-]*code\s*(?:is|:|-|=)?\s*(\d{2}[\s-]?\d{2}[\s-]?\d{2})\b")
_ACCOUNT_CONTEXT = re.compile(
    r"(?i)\b(?:account|acct|acc|a/c|customer|client|member|membership|reference|ref|policy|"
    r"routing|iban|bsb|card|loan|mortgage)\b(?:\s+(?:number|no|num|nr|id))?\.?\s*(?:is|:|#|=|-)?\s*(?:#\s*)?$"
)
_MONEY_BEFORE = re.compile(r"[$£€¥]\s*$|\b(?:usd|eur|gbp|chf)\s*$", re.IGNORECASE)
_MONEY_AFTER = re.compile(r"^\s*(?:usd|eur|gbp|chf|dollars?|pounds?|euros?|quid|bucks|pence|cents?)\b", re.IGNORECASE)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _emails(text: str) -> Iterator[Tuple[int, int]]:
    for match in _EMAIL.finditer(text):
        yield match.span()


def _ibans(text: str) -> Iterator[Tuple[int, int]]:
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


_DOTTED_CARD = re.compile(r"(?<![\w.])\d{4}(?:\.\d{4}){3}(?:\.\d{1,3})?(?![\w]|\.\d)")


def _cards(text: str) -> Iterator[Tuple[int, int]]:
    for match in _DOTTED_CARD.finditer(text):  # 4111.1111.1111.1111
        if luhn_valid(_digits(match.group(0))):
            yield match.span()
    for match in _DIGIT_RUN.finditer(text):
        # A run may join a card to a neighbouring number ("4111 1111 1111 1111 12"):
        # look for the longest stretch of whole digit groups that is a card.
        groups = [(m.start() + match.start(), m.end() + match.start()) for m in re.finditer(r"\d+", match.group(0))]
        best = None
        for i in range(len(groups)):
            for j in range(len(groups), i, -1):
                digits = _digits(text[groups[i][0]:groups[j - 1][1]])
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    if best is None or groups[j - 1][1] - groups[i][0] > best[1] - best[0]:
                        best = (groups[i][0], groups[j - 1][1])
                    break
        if best:
            yield best


def _phones(text: str) -> Iterator[Tuple[int, int]]:
    for match in _PHONE.finditer(text):
        n_digits = len(_digits(match.group(0)))
        if 7 <= n_digits <= 15:
            yield match.span()


_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{4}")


def _number_runs(text: str) -> Iterator[Tuple[int, int, str]]:
    """Runs of digits that are not amounts of money or dates, with their digits."""
    for match in _DIGIT_RUN.finditer(text):
        before, after = text[: match.start()], text[match.end():]
        if _MONEY_BEFORE.search(before) or _MONEY_AFTER.match(after) or _DATE.fullmatch(match.group(0)):
            continue
        yield match.start(), match.end(), _digits(match.group(0))


def _accounts_named(text: str) -> Iterator[Tuple[int, int]]:
    for match in _SORT_CODE.finditer(text):
        yield match.span(1)
    for start, end, digits in _number_runs(text):
        if 6 <= len(digits) <= 17 and _ACCOUNT_CONTEXT.search(text[max(0, start - 40):start]):
            yield start, end


_SECRET = re.compile(
    r"(?i)\b(?:pin|cvv2?|cvc2?|csc|security\s+code|passcode|one[\s-]time\s+(?:pass)?code|otp)"
    r"(?:\s+(?:number|code|no))?\s*(?:is|:|=|-)?\s*(\d{3,6})\b"
)


def _secrets(text: str) -> Iterator[Tuple[int, int]]:
    for match in _SECRET.finditer(text):
        yield match.span(1)


# Numbers that name a purchase, a parcel or a support case, not a person: kept readable
# (a card number among them is still caught by the card check, which runs first).
_NOT_PERSONAL_CONTEXT = re.compile(
    r"(?i)\b(?:order|tracking|parcel|shipment|consignment|invoice|case|ticket|booking|confirmation)\b"
    r"(?:\s+(?:number|no|num|nr|id|code))?\.?\s*(?:is|:|#|=|-)?\s*(?:#\s*)?$"
)
_COMPACT_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


def _long_numbers(text: str) -> Iterator[Tuple[int, int]]:
    for start, end, digits in _number_runs(text):
        if len(digits) < 8 or _NOT_PERSONAL_CONTEXT.search(text[max(0, start - 40):start]):
            continue
        if _COMPACT_DATE.fullmatch(text[start:end]):  # 20240315
            continue
        yield start, end


_DETECTORS: List[Tuple[str, Callable[[str], Iterator[Tuple[int, int]]]]] = [
    (EMAIL, _emails),
    (IBAN, _ibans),
    (CARD, _cards),
    (ACCOUNT, _accounts_named),
    (PHONE, _phones),
    (ACCOUNT, _long_numbers),
    (PIN, _secrets),
]


def find_personal_data(text: str) -> List[PersonalData]:
    """Every piece of personal data in `text`, in reading order, without overlaps."""
    found: List[PersonalData] = []
    taken: List[Tuple[int, int]] = []
    for kind, detect in _DETECTORS:
        for start, end in detect(text):
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append(PersonalData(kind, start, end, text[start:end]))
    return sorted(found, key=lambda item: item.start)


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


# --- measurement ----------------------------------------------------------------

KINDS = (CARD, IBAN, EMAIL, PHONE, ACCOUNT, PIN)


def _match(gold: List[Tuple[int, int]], found: List[Tuple[int, int]]) -> int:
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


def evaluate(rows: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    """Precision, recall and F1 of `find_personal_data` on labelled rows, per kind and overall.

    A row is ``{"text": ..., "spans": [{"kind", "start", "end"}, ...]}`` listing
    everything that must be redacted (nothing, for a negative). A found span
    counts when it overlaps a labelled span of the same kind; ``any kind``
    counts it whatever kind it was given (what matters for privacy: the text
    is hidden); ``exact`` only when kind, start and end all agree (a span
    that also swallows the next words is caught there). Also returns the
    mistakes (``errors``) for reading.
    """
    counts = {kind: [0, 0, 0] for kind in KINDS}  # tp, found, gold
    any_kind, exact = [0, 0, 0], [0, 0, 0]
    errors: List[Dict[str, Any]] = []
    n_rows = 0
    for row in rows:
        n_rows += 1
        text = row["text"]
        gold = [(s["kind"], s["start"], s["end"]) for s in row.get("spans", [])]
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
    import json
    import sys

    parser = argparse.ArgumentParser(description="Redact personal data, or measure the redaction on labelled texts.")
    parser.add_argument("--evaluate", metavar="JSONL", help="labelled texts: {text, spans: [{kind, start, end}]} per line")
    parser.add_argument("--errors", action="store_true", help="also print every text where the spans differ")
    parser.add_argument("--split", help="only rows whose 'split' is this (e.g. tuning, holdout); default: each split, then all")
    args = parser.parse_args(argv)
    if not args.evaluate:
        for line in sys.stdin:
            sys.stdout.write(redact(line))
        return 0
    with open(args.evaluate, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
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
