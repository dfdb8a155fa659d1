"""Reading records from JSONL and CSV files, each with the line it came from.

The one reader behind every data file the project takes in (interactions,
items and customers; past answers; encoder and intent training data; model
folders' JSONL parts; labelled redaction texts):

- `read_jsonl(path)`: one JSON object a line, blank lines skipped;
- `read_csv(path)`: a header line, then one record a row (``.tsv``: tab
  separated); column names are matched without regard to case or
  surrounding spaces; rows with no value at all are skipped;
- `read_records(path)`: either, by the file's ending;
- `read_lines(path)`: the decoded lines of any text file (transcripts).

Each yields ``(line number, row dict)``. A record that cannot be used is a
`RecordError` naming the file, the line and what is wrong: raised at once
(``errors="raise"``, the default), or yielded in the row's place
(``errors="yield"``) for callers that report bad lines and go on. Files are
read as UTF-8 (a byte-order mark is dropped); a line that is not UTF-8 is read
as Windows-1252, as older desk tools and spreadsheets export it.
"""
from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv", ".tsv")

# A required column: a name, or a tuple of names of which one must be present.
Column = Union[str, Tuple[str, ...]]
Row = Union[Dict[str, Any], "RecordError"]


class RecordError(ValueError):
    """A record (or a whole file) that cannot be used: file, line and what is wrong."""

    def __init__(self, path: Any, line: int, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{self.location}: {problem}")

    @property
    def location(self) -> str:
        """``file:line`` (just the file when the problem is the whole file, line 0)."""
        return f"{self.path}:{self.line}" if self.line else self.path


def _check_errors(errors: str) -> None:
    if errors not in ("raise", "yield"):
        raise ValueError("errors must be 'raise' or 'yield'")


def read_lines(path: Any) -> Iterator[str]:
    """The file's lines, line endings kept, decoded one by one (UTF-8, else Windows-1252)."""
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                yield raw.decode("cp1252", errors="replace")


def _missing(columns: Iterable[str], required: Sequence[Column]) -> List[str]:
    present = set(columns)
    missing = []
    for column in required:
        options = (column,) if isinstance(column, str) else tuple(column)
        if not any(option in present for option in options):
            missing.append(options[0] if len(options) == 1 else "one of " + "/".join(options))
    return missing


def read_jsonl(path: Any, required: Sequence[Column] = (), errors: str = "raise") -> Iterator[Tuple[int, Row]]:
    """(line number, object) for each non-blank line; `required`: keys every object must have."""
    _check_errors(errors)
    path = Path(path)
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        problem: Optional[str] = None
        try:
            row = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or a line nested deeper than the parser goes
            problem = f"not valid JSON ({getattr(exc, 'msg', exc)})"
        except RecursionError:
            problem = "not valid JSON (nested too deeply)"
        else:
            if not isinstance(row, dict):
                problem = "not a JSON object"
            elif required:
                missing = _missing(row, required)
                if missing:
                    problem = f"missing {', '.join(missing)}"
        if problem is None:
            yield number, row
            continue
        error = RecordError(path, number, problem)
        if errors == "raise":
            raise error
        yield number, error


def csv_columns(path: Any) -> List[str]:
    """The header of a CSV/TSV file as `read_csv` names its columns (empty for an empty file)."""
    path = Path(path)
    reader = csv.reader(read_lines(path), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        return [name.strip().lower() for name in next(reader)]
    except (StopIteration, csv.Error):
        return []


def read_csv(path: Any, required: Sequence[Column] = (), errors: str = "raise") -> Iterator[Tuple[int, Row]]:
    """(line number, {column: value}) for each row after the header.

    The line number is the row's last line (a quoted value may span lines).
    A header without the `required` columns is one error at line 1, after
    which nothing more is read; a row with a different number of fields than
    the header (blank extra fields apart) or one the CSV reader cannot parse
    is an error at its line.
    """
    _check_errors(errors)
    path = Path(path)
    reader = csv.reader(read_lines(path), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")

    def fail(line: int, problem: str) -> RecordError:
        error = RecordError(path, line, problem)
        if errors == "raise":
            raise error
        return error

    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        yield 1, fail(1, "empty file")
        return
    except csv.Error as exc:
        yield 1, fail(1, f"unreadable header ({exc})")
        return
    missing = _missing(header, required)
    if missing:
        yield 1, fail(1, f"the header needs column(s) {', '.join(missing)}; found {header}")
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, fail(reader.line_num, f"malformed CSV ({exc})")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header) and not any(cell.strip() for cell in cells[len(header):]):
            cells = cells[: len(header)]  # trailing separators
        if len(cells) != len(header):
            yield reader.line_num, fail(reader.line_num, f"{len(cells)} fields where the header has {len(header)}")
            continue
        yield reader.line_num, {name: value for name, value in zip(header, cells) if name}


def read_records(path: Any, required: Sequence[Column] = (), errors: str = "raise") -> Iterator[Tuple[int, Row]]:
    """`read_jsonl` or `read_csv` by the file's ending; another ending is a `RecordError` (line 0)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path, required, errors)
    if suffix in CSV_SUFFIXES:
        return read_csv(path, required, errors)
    raise RecordError(path, 0, f"unknown file type '{suffix}'; use .csv or .jsonl")
