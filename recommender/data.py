"""Customers, items and interactions as tables, read from CSV or JSONL files and checked.

The three tables the recommender learns from:

- customers: ``customer_id`` and optional ``segment``, ``age_band``;
- items: ``item_id``, ``title`` and optional ``kind`` (product, service or
  article), ``description``, ``tags`` (a list, or a string split on ``|``
  or ``,``), ``url``, ``active``;
- interactions: ``customer_id``, ``item_id``, ``timestamp`` (seconds since
  1970 or an ISO date) and optional ``kind`` (view, click, purchase,
  dismiss, topic, ...), ``weight``, ``topic`` (what a ``topic`` row was
  about; such rows need no item).

Loading a file checks every row and, when some are bad, raises
`DataFileError` listing them by line number, so they can be fixed in the
file; ``errors="skip"`` keeps the good rows instead and puts the problems in
``frame.attrs["problems"]``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import pandas as pd

from core.records import RecordError, read_records

ITEM_KINDS = ("product", "service", "article")
INTERACTION_COLUMNS = ["customer_id", "item_id", "timestamp", "kind", "weight", "topic"]
ITEM_COLUMNS = ["item_id", "kind", "title", "description", "tags", "url", "active"]
CUSTOMER_COLUMNS = ["customer_id", "segment", "age_band"]
# Errors listed in one message; the rest are counted.
SHOWN_PROBLEMS = 20


class DataFileError(ValueError):
    """Rows of a data file (or table) that cannot be used, each with its line number."""

    def __init__(self, source: str, problems: List[Tuple[int, str]], total: int):
        self.source, self.problems, self.total = source, problems, total
        shown = "\n".join(f"  line {line}: {message}" for line, message in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(
            f"{source}: {len(problems)} of {total} rows cannot be used; fix them (or load with "
            f"errors='skip' to leave them out):\n{shown}{more}"
        )


def _read_rows(path: Path) -> Iterator[Tuple[int, Any]]:
    """(line number, row dict or an error string) for each record of a CSV or JSONL file."""
    try:
        records = read_records(path, errors="yield")
    except RecordError as exc:  # an unknown file type
        raise DataFileError(str(path), [(0, exc.problem)], 0) from None
    for number, row in records:
        yield number, row.problem if isinstance(row, RecordError) else row


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def parse_timestamp(value: Any) -> float:
    """Seconds since 1970 from a number or an ISO date string; ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isnan(value):
            raise ValueError("timestamp is missing")
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"timestamp {text!r} is neither seconds since 1970 nor an ISO date") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def parse_tags(value: Any) -> List[str]:
    """Tags from a list or from a string separated by '|' or ','."""
    if _blank(value):
        return []
    if isinstance(value, (list, tuple)):
        return [str(tag).strip() for tag in value if str(tag).strip()]
    text = str(value)
    if text.startswith("["):
        try:
            return parse_tags(json.loads(text))
        except ValueError:
            pass
    separator = "|" if "|" in text else ","
    return [tag.strip() for tag in text.split(separator) if tag.strip()]


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if _blank(value):
        return True
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y"):
        return True
    if text in ("0", "false", "no", "n"):
        return False
    raise ValueError(f"active must be true or false, got {value!r}")


def _check_interaction(row: Dict[str, Any]) -> Dict[str, Any]:
    customer = row.get("customer_id")
    if _blank(customer):
        raise ValueError("customer_id is missing")
    kind = "interaction" if _blank(row.get("kind")) else str(row["kind"]).strip().lower()
    item = row.get("item_id")
    topic = None if _blank(row.get("topic")) else str(row["topic"]).strip()
    if _blank(item):
        if kind != "topic" or topic is None:
            raise ValueError("item_id is missing (only a 'topic' row with a topic may have no item)")
        item = None
    if "timestamp" not in row or _blank(row.get("timestamp")):
        raise ValueError("timestamp is missing")
    timestamp = parse_timestamp(row["timestamp"])
    weight = row.get("weight")
    if _blank(weight):
        weight = float("nan")  # filled from the kind's default weight at fit time
    else:
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight {weight!r} is not a number") from None
        if math.isnan(weight) or math.isinf(weight):
            raise ValueError(f"weight {weight!r} is not a finite number")
    return {
        "customer_id": as_id(customer), "item_id": None if item is None else as_id(item),
        "timestamp": timestamp, "kind": kind, "weight": weight, "topic": topic,
    }


def as_id(value: Any) -> str:
    """A customer or item id as the recommender keys it: text (42, 42.0 and "42" are all "42")."""
    # 42.0 read from a numeric CSV column is the id "42", not "42.0".
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _check_item(row: Dict[str, Any]) -> Dict[str, Any]:
    if _blank(row.get("item_id")):
        raise ValueError("item_id is missing")
    if _blank(row.get("title")):
        raise ValueError("title is missing")
    kind = "product" if _blank(row.get("kind")) else str(row["kind"]).strip().lower()
    if kind not in ITEM_KINDS:
        raise ValueError(f"kind {row['kind']!r} is not one of {', '.join(ITEM_KINDS)}")
    return {
        "item_id": as_id(row["item_id"]), "kind": kind, "title": str(row["title"]).strip(),
        "description": "" if _blank(row.get("description")) else str(row["description"]).strip(),
        "tags": parse_tags(row.get("tags")), "url": None if _blank(row.get("url")) else str(row["url"]).strip(),
        "active": _parse_bool(row.get("active")),
    }


def _check_customer(row: Dict[str, Any]) -> Dict[str, Any]:
    if _blank(row.get("customer_id")):
        raise ValueError("customer_id is missing")
    return {
        "customer_id": as_id(row["customer_id"]),
        "segment": None if _blank(row.get("segment")) else str(row["segment"]).strip(),
        "age_band": None if _blank(row.get("age_band")) else str(row["age_band"]).strip(),
    }


def _checked(rows: Iterable[Tuple[int, Any]], check, columns: List[str], source: str, errors: str, unique: Optional[str] = None) -> pd.DataFrame:
    if errors not in ("raise", "skip"):
        raise ValueError("errors must be 'raise' or 'skip'")
    good, problems, total, seen = [], [], 0, set()
    for line, row in rows:
        total += 1
        if isinstance(row, str):
            problems.append((line, row))
            continue
        try:
            checked = check(row)
        except ValueError as exc:
            problems.append((line, str(exc)))
            continue
        if unique is not None:
            if checked[unique] in seen:
                problems.append((line, f"{unique} {checked[unique]!r} appears more than once"))
                continue
            seen.add(checked[unique])
        good.append(checked)
    if problems and errors == "raise":
        raise DataFileError(source, problems, total)
    frame = pd.DataFrame(good, columns=columns)
    frame.attrs["problems"] = problems
    return frame


def _file_rows(path: Any) -> Tuple[Path, Iterator[Tuple[int, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist; check the path (CSV or JSONL expected)")
    return path, _read_rows(path)


def _frame_rows(frame: pd.DataFrame) -> Iterator[Tuple[int, Dict[str, Any]]]:
    # Row numbers count from 1, like lines of a file without a header.
    for number, row in enumerate(frame.to_dict("records"), start=1):
        yield number, row


def load_interactions(path: Any, errors: str = "raise") -> pd.DataFrame:
    """Interactions from a CSV or JSONL file, checked row by row (see the module docstring)."""
    path, rows = _file_rows(path)
    return _checked(rows, _check_interaction, INTERACTION_COLUMNS, str(path), errors)


def load_items(path: Any, errors: str = "raise") -> pd.DataFrame:
    """Items from a CSV or JSONL file, checked row by row; ids must be unique."""
    path, rows = _file_rows(path)
    return _checked(rows, _check_item, ITEM_COLUMNS, str(path), errors, unique="item_id")


def load_customers(path: Any, errors: str = "raise") -> pd.DataFrame:
    """Customers from a CSV or JSONL file, checked row by row; ids must be unique."""
    path, rows = _file_rows(path)
    return _checked(rows, _check_customer, CUSTOMER_COLUMNS, str(path), errors, unique="customer_id")


def check_interactions(frame: pd.DataFrame, errors: str = "raise") -> pd.DataFrame:
    """A DataFrame of interactions in the standard form, or `DataFileError` naming bad rows."""
    _require(frame, ("customer_id", "timestamp"), "interactions")
    if "item_id" not in frame.columns and "topic" not in frame.columns:
        raise DataFileError("interactions", [(0, "column item_id is missing")], len(frame))
    return _checked(_frame_rows(frame), _check_interaction, INTERACTION_COLUMNS, "interactions", errors)


def check_items(frame: pd.DataFrame, errors: str = "raise") -> pd.DataFrame:
    """A DataFrame of items in the standard form, or `DataFileError` naming bad rows."""
    _require(frame, ("item_id", "title"), "items")
    return _checked(_frame_rows(frame), _check_item, ITEM_COLUMNS, "items", errors, unique="item_id")


def check_customers(frame: pd.DataFrame, errors: str = "raise") -> pd.DataFrame:
    """A DataFrame of customers in the standard form, or `DataFileError` naming bad rows."""
    _require(frame, ("customer_id",), "customers")
    return _checked(_frame_rows(frame), _check_customer, CUSTOMER_COLUMNS, "customers", errors, unique="customer_id")


def _require(frame: pd.DataFrame, columns: Tuple[str, ...], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFileError(what, [(0, f"column(s) {', '.join(missing)} missing; columns found: {', '.join(map(str, frame.columns))}")], len(frame))


def write_jsonl(frame: pd.DataFrame, path: Any, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write `frame` as JSON lines (with `extra` fields on every row); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in frame.to_dict("records"):
            clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            clean.update(extra or {})
            fh.write(json.dumps(clean, ensure_ascii=False) + "\n")
    return path
